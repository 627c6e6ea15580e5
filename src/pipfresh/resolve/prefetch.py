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
would leave them in its cache: pip reads each from there. Their ``Requires-Dist``
is followed, a round at a time (``requirements_of``, markers evaluated for the
target, extras not taken): the pages of the projects they name, then the metadata
of the version pip is likely to take from each (``guessed_pins``: the newest its
specifier admits), until no new project is named. A guess pip does not take costs
its bytes.

Last, while pip resolves, the wheel pip will download for each such pin
(``wheel_urls``: of one version's wheels, the one whose tags the target ranks
first, as pip's candidate order takes it), unless the store holds its sha256: on
these pips a dry run with PEP 658 metadata downloads no wheel, so nothing races
pip's own download, and the store's ``pip wheel`` finds them in pip's cache.

Prefetching decides nothing: pip still resolves from what the index says in this
run, and a page pip turns out not to read costs one request. Left to pip: indexes
with credentials in their URL (pip's auth and keyring), ``--no-index``, and
requirements that are URLs or paths.
"""

from __future__ import annotations

import email.parser
import json
import posixpath
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging import tags
from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    BuildTag,
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from pipfresh.pip import httpcache, options, reqfiles
from pipfresh.pip.args import option_values
from pipfresh.resolve.hashpins import marker_environment
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


def pages_beside(pages: Sequence[Page], names: Sequence[str], http_dir: Path) -> list[Page]:
    """The pages of ``names`` on each index ``pages`` (root pages) are on, as ``root_pages``
    gives them."""
    indexes: dict[str, None] = {}
    for page in pages:
        project = posixpath.basename(page.url.rstrip("/"))
        indexes[page.url[: -len(project) - 1]] = None
    urls = [_page_url(index, name) for index in indexes for name in names]
    return [with_validators(u, http_dir) or Page(u) for u in dict.fromkeys(urls)]


def requirements_of(
    offers: Mapping[str, Offer], facts: Facts, http_dir: Path
) -> dict[str, SpecifierSet]:
    """What the wheel pip is likely to take from each page (``wheel_urls``' choice) needs
    for the target, by its metadata in pip's cache: canonical name -> the specifiers
    ``Requires-Dist`` gives it (markers evaluated for the target; extras not taken)."""
    environment = marker_environment(facts)
    found: dict[str, SpecifierSet] = {}
    for offered in _installable(offers, facts).values():
        best = _best(offered)
        metadata = httpcache.entry_path(http_dir, best.url + ".metadata")
        try:
            body = httpcache.read_body(httpcache.entry_files_for(metadata))
        except (OSError, ValueError, httpcache.CorruptEntry):
            continue  # not fetched: pip reads what it needs itself
        parsed = email.parser.BytesParser().parsebytes(body, headersonly=True)
        for text in parsed.get_all("Requires-Dist") or []:
            try:
                requirement = Requirement(str(text))
                if requirement.marker is not None and not requirement.marker.evaluate(environment):
                    continue
            except (InvalidRequirement, UndefinedEnvironmentName):
                continue
            name = str(canonicalize_name(requirement.name))
            found[name] = found.get(name, SpecifierSet()) & requirement.specifier
    return found


def guessed_pins(offers: Mapping[str, Offer], wanted: Mapping[str, SpecifierSet]) -> dict[str, str]:
    """For each page of a project in ``wanted``, the newest version it lists that the
    specifier admits (a final release where there is one), as an exact pin."""
    pins = {}
    for offer in offers.values():
        specifier = wanted.get(offer.project)
        listed = []
        for text in offer.versions or []:
            try:
                listed.append(Version(text))
            except ValueError:
                continue
        admitted = list(specifier.filter(listed)) if specifier is not None else []
        if admitted:
            pins[offer.project] = f"=={max(admitted)}"
    return pins


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
    found = [
        wheel.url + ".metadata"
        for offered in _installable(offers, facts).values()
        for wheel in offered
    ]
    return [u for u in dict.fromkeys(found) if not httpcache.entry_path(http_dir, u).exists()]


def wheel_urls(
    offers: Mapping[str, Offer], facts: Facts, http_dir: Path, stored: Callable[[str], bool]
) -> dict[str, str | None]:
    """The wheel pip will download for each pinned page, with its sha256 as the page
    gives it: among the files ``metadata_urls`` takes, the highest version, then the
    tags the target ranks first, then the highest build tag (pip's candidate order,
    hashes and yanks aside); unless pip's cache holds it, or the store (``stored``, by
    its sha256: an install takes it from there)."""
    found: dict[str, str | None] = {}
    for offered in _installable(offers, facts).values():
        best = _best(offered)
        if not (best.sha256 and stored(best.sha256)):
            found[best.url] = best.sha256
    return {u: h for u, h in found.items() if not httpcache.entry_path(http_dir, u).exists()}


class _Wheel:
    """A wheel a pinned page offers the target: where it is, its sha256, pip's rank of it."""

    def __init__(self, url: str, sha256: str | None, rank: tuple[Version, int, BuildTag]):
        self.url, self.sha256, self.rank = url, sha256, rank


def _best(offered: Sequence[_Wheel]) -> _Wheel:
    """The one pip takes: highest version, then the target's tag priority, then build."""
    return max(offered, key=lambda wheel: wheel.rank)


def _installable(offers: Mapping[str, Offer], facts: Facts) -> dict[str, list[_Wheel]]:
    """Per pinned page, the wheels within its pins the target can install and whose
    metadata pip reads without downloading them (CPython targets only)."""
    ordered = _supported(facts)
    if ordered is None:
        return {}
    priority = {tag: len(ordered) - i for i, tag in enumerate(ordered)}  # pip's, higher first
    python = Version(".".join(map(str, facts.version_info[:3])))
    found: dict[str, list[_Wheel]] = {}
    for page, offer in offers.items():
        for entry in (offer.pinned or [])[1:]:  # [0] is the page's own facts
            url, attributes = json.loads(entry)
            wheel = _wanted(url, attributes, priority, python)
            if wheel is not None:
                found.setdefault(page, []).append(wheel)
    return found


def _wanted(
    url: str, attributes: Mapping[str, object], priority: Mapping[tags.Tag, int], python: Version
) -> _Wheel | None:
    metadata = attributes.get("core-metadata", attributes.get("dist-info-metadata"))
    metadata = attributes.get(
        "data-core-metadata", attributes.get("data-dist-info-metadata", metadata)
    )
    yanked = attributes.get("yanked", attributes.get("data-yanked", False))
    if not metadata or metadata == "false" or (yanked is not False and yanked is not None):
        return None
    requires = attributes.get("requires-python", attributes.get("data-requires-python"))
    try:
        if requires and python not in SpecifierSet(str(requires)):
            return None  # pip skips it for this interpreter
    except InvalidSpecifier:
        pass  # pip ignores a specifier it cannot read too
    location, _, fragment = url.partition("#")
    filename = urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(location).path))
    try:
        _name, version, build, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None  # an sdist: pip builds its metadata
    ranked = [priority[tag] for tag in wheel_tags if tag in priority]
    if not ranked:
        return None
    return _Wheel(location, _sha256(fragment, attributes), (version, max(ranked), build))


def _sha256(fragment: str, attributes: Mapping[str, object]) -> str | None:
    """The file's sha256 as the page gives it (PEP 691 ``hashes``, else the URL's fragment)."""
    hashes = attributes.get("hashes")
    if isinstance(hashes, Mapping) and isinstance(hashes.get("sha256"), str):
        return str(hashes["sha256"])
    name, _, value = fragment.partition("=")
    return value.lower() if name == "sha256" and value else None


def _supported(facts: Facts) -> list[tags.Tag] | None:
    """The tags a CPython target installs, most specific first (this machine's
    platforms: the target runs here); None for another implementation (nothing is
    fetched ahead for it)."""
    if facts.implementation != "cpython":
        return None
    version = facts.version_info[:2]
    interpreter = f"cp{version[0]}{version[1]}"
    platforms = list(tags.platform_tags())
    found = list(tags.cpython_tags(version, [interpreter + facts.abiflags], platforms))
    found += tags.compatible_tags(version, interpreter, platforms)
    return list(dict.fromkeys(found))
