"""Before a dry run with nothing recorded: the root requirements' index pages, at once.

pip's resolver fetches one project page after another, each a round trip before the
next. The pages of the projects the user names (on the command line, in ``-r``
files) are known before it starts, so they are asked here all at once, over the
revalidation round's connections (``revalidate.Revalidator``), and go into pip's
cache as that round writes them: a pip that trusts ``max-age`` (>= 26.2) then reads
them from there without a request (``Revalidator.pip_for``, which also drops every
page this run did not verify). Older pips send a request for every page whatever
their cache holds, so for them nothing is fetched ahead: each page would cost two.

Then the PEP 658 ``.metadata`` of the wheels an exact root pin (``==``/``===``)
leaves on those pages for the target's tags, all at once too, as pip's own download
would leave them in its cache: pip reads each from there. (No ``Requires-Dist`` is
followed: pip asks for the pages its resolver finds beyond these.)

Prefetching decides nothing: pip still resolves from what the index says in this
run, and a page pip turns out not to read costs one request. Left to pip: indexes
with credentials in their URL (pip's auth and keyring), ``--no-index``, and
requirements that are URLs or paths.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging import tags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from pipfresh.pip import httpcache, options, reqfiles
from pipfresh.pip.args import option_values
from pipfresh.resolve.pagelog import Page, with_validators
from pipfresh.target.interpreter import Facts

if TYPE_CHECKING:
    from pipfresh.resolve.reuse import Offer

PYPI = "https://pypi.org/simple"  # pip's PyPI.simple_url
_INDEX = options.spellings("--index-url")
_EXTRA = options.spellings("--extra-index-url")
_NO_INDEX = options.spellings("--no-index")


def root_pages(
    pip_args: Sequence[str],
    settings: Mapping[str, str],
    http_dir: Path,
    also: Sequence[str] = (),
) -> list[Page]:
    """The page of each root requirement's project on each index pip reads, and the pages
    ``also`` (a last resolution's) on those indexes, each with the validators pip's cache
    holds for it (a conditional request where it has one). ``settings``: pip's
    configuration and ``PIP_*`` values. Empty when pip reads no index pipfresh may ask."""
    names = list(option_values(pip_args, reqfiles.REQUIREMENTS))
    names += settings.get("requirement", "").split()
    walked = reqfiles.walk(names)
    lines = [line.split() for line in walked.lines]
    indexes = _indexes(pip_args, settings, [opt for _text, opts in lines for opt in opts])
    projects: dict[str, None] = {}
    for text in [token for _at, token in options.positionals(pip_args)]:
        _add(projects, text)
    for text, _opts in lines:
        if text and not text.startswith("-"):
            _add(projects, text)
    if not indexes:
        return []
    urls = [_page_url(index, name) for index in indexes for name in projects]
    urls += [u for u in also if any(u.startswith(index.rstrip("/") + "/") for index in indexes)]
    return [with_validators(u, http_dir) or Page(u) for u in dict.fromkeys(urls)]


def _add(projects: dict[str, None], text: str) -> None:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return  # a path, a URL, an editable: pip reads no page for it
    if not requirement.url:
        projects[str(canonicalize_name(requirement.name))] = None


def _indexes(
    pip_args: Sequence[str], settings: Mapping[str, str], in_files: Sequence[str]
) -> list[str]:
    """The index URLs pip reads, in its order: the index, then the extra ones; none with
    ``--no-index`` or a URL carrying credentials (pip's to authenticate)."""
    given = [*in_files, *pip_args]  # options in requirement files apply to the whole run
    no_index = settings.get("no-index", "").lower() in ("1", "true", "yes", "on")
    if no_index or any(arg in _NO_INDEX for arg in given):
        return []
    index = next(reversed(list(option_values(given, _INDEX))), None)
    index = index or settings.get("index-url") or PYPI
    extras = [*settings.get("extra-index-url", "").split(), *option_values(given, _EXTRA)]
    found = list(dict.fromkeys([index, *extras]))
    if any("@" in urllib.parse.urlsplit(url).netloc for url in found):
        return []
    return found


def _page_url(index: str, name: str) -> str:
    """pip's ``mkurl_pypi_url``: the index URL joined with the canonical name, and '/'."""
    url = posixpath.join(index, urllib.parse.quote(name))
    return url if url.endswith("/") else url + "/"


def metadata_urls(offers: Mapping[str, Offer], facts: Facts, http_dir: Path) -> list[str]:
    """The ``.metadata`` URL of each wheel a pinned page offers within its pins that the
    target can install (CPython targets only), not yanked, with metadata, and not yet in
    pip's cache. ``offers``: ``reuse.offers`` of the prefetched pages."""
    supported = _supported(facts)
    if supported is None:
        return []
    found = []
    for offer in offers.values():
        for entry in (offer.pinned or [])[1:]:  # [0] is the page's own facts
            url, attributes = json.loads(entry)
            if _wanted(url, attributes, supported):
                found.append(url.split("#", 1)[0] + ".metadata")
    return [u for u in dict.fromkeys(found) if not httpcache.entry_path(http_dir, u).exists()]


def _wanted(url: str, attributes: Mapping[str, object], supported: set[tags.Tag]) -> bool:
    metadata = attributes.get("core-metadata", attributes.get("dist-info-metadata"))
    metadata = attributes.get(
        "data-core-metadata", attributes.get("data-dist-info-metadata", metadata)
    )
    yanked = attributes.get("yanked", attributes.get("data-yanked", False))
    if not metadata or metadata == "false" or (yanked is not False and yanked is not None):
        return False
    filename = urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path))
    try:
        _name, _version, _build, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False  # an sdist: pip builds its metadata
    return bool(wheel_tags & supported)


def _supported(facts: Facts) -> set[tags.Tag] | None:
    """The tags a CPython target installs (this machine's platforms: the target runs
    here); None for another implementation (nothing is fetched ahead for it)."""
    if facts.implementation != "cpython":
        return None
    version = facts.version_info[:2]
    interpreter = f"cp{version[0]}{version[1]}"
    platforms = list(tags.platform_tags())
    found = set(tags.cpython_tags(version, [interpreter + facts.abiflags], platforms))
    found |= set(tags.compatible_tags(version, interpreter, platforms))
    return found
