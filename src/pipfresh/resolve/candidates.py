"""What a changed index page offers within the root pins: may the last resolution stand?

A recorded resolution is reused when a page it read changed only if pip's answer
provably cannot differ. The rule, for each changed page:

- Its project must be pinned exactly by the ROOT requirements or constraints
  (``==V`` without a wildcard, or ``===V``; on the command line, in a requirement or
  constraint file, ``PIP_CONSTRAINT`` and the like; a line with a marker never counts,
  nor a direct reference). Every candidate pip considers for a project satisfies every
  root specifier of it: the resolver intersects them and the finder filters by them.
- The page's files whose version the pins admit (``packaging``'s ``SpecifierSet``,
  as pip uses it: zero padding ``==1.0`` admits ``1.0.0``, a pin without a local label
  admits ``1.0+local``; pre-releases admitted regardless of ``--pre``), plus every file
  whose version pipfresh cannot read, plus the page's own facts (PEP 691 ``meta``
  without its ``_``-private keys, ``<meta>`` and ``<base>`` of a PEP 503 page), are
  taken with every attribute the index gives them (URL, hashes, ``requires-python``,
  ``yanked``, PEP 658/714 metadata keys, ...). That set must be identical to the one
  recorded from the page pip read.

Why this is sound: pip derives a project's candidates link by link from its pages;
what it does next (wheel tags, ``requires-python``, yanks, ``--only-binary``,
``--no-binary``, ``--prefer-binary``, ``--pre``, ``--hash``, the metadata it reads)
only filters and orders those links, by their own attributes. The set here is a
superset of the links pip can keep under the pins: identical attributes of an
identical superset give pip identical candidates, so the same resolution. A file
outside the pins can never be chosen, so a new release of a pinned project (the
locked CI day) changes nothing. Each filter is left out on purpose: applying it
only shrinks the set, and a superset compared whole is safe without it.

Anything else is pip's to resolve: an unpinned project, a page that cannot be read
(not HTML or PEP 691 JSON, a 404, a page newly found), a file added, gone or changed
within the pins (a new wheel for the pinned version, a yank).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pipfresh.pip import options, reqfiles
from pipfresh.pip.args import option_values

JSON_V1 = "application/vnd.pypi.simple.v1+json"
_HTML = ("application/vnd.pypi.simple.v1+html", "text/html")


@dataclass(frozen=True)
class Listing:
    """A project page as pip reads it: the page's own facts and its files, each with
    its absolute URL and the attributes the index gives it."""

    facts: str
    files: tuple[tuple[str, str], ...]  # (filename, canonical JSON of url and attributes)


def parse(body: bytes, content_type: str, url: str) -> Listing | None:
    """The page as a ``Listing``; None for one pip would not read as pipfresh does."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if media == JSON_V1:
            return _parse_json(json.loads(text), url)
        if media in _HTML:
            return _parse_html(text, url)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return None


def _entry(url: str, attributes: Mapping[str, Any]) -> tuple[str, str]:
    filename = unquote(posixpath.basename(urlsplit(url).path))
    return filename, json.dumps([url, attributes], sort_keys=True)


def _parse_json(doc: dict[str, Any], url: str) -> Listing:
    meta = {k: v for k, v in doc.get("meta", {}).items() if not str(k).startswith("_")}
    facts = {k: v for k, v in doc.items() if k not in ("files", "versions", "meta")}
    files = []
    for file in doc["files"]:
        attributes = {k: v for k, v in file.items() if k != "url"}
        files.append(_entry(urljoin(url, file["url"]), attributes))
        if file.get("filename") and file["filename"] != files[-1][0]:
            files.append((str(file["filename"]), files[-1][1]))  # either name may be read
    return Listing(json.dumps([meta, facts], sort_keys=True), tuple(files))


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.meta: list[tuple[str, str]] = []
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "base" and self.base is None:
            self.base = found.get("href")
        elif tag == "meta":
            self.meta.append((str(found.get("name")), str(found.get("content"))))
        elif tag == "a" and found.get("href"):
            self.anchors.append(found)


def _parse_html(text: str, url: str) -> Listing:
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    base = urljoin(url, parser.base) if parser.base else url
    files = []
    for anchor in parser.anchors:
        attributes = {k: v for k, v in anchor.items() if k != "href"}
        files.append(_entry(urljoin(base, str(anchor["href"])), attributes))
    return Listing(json.dumps([sorted(parser.meta), base]), tuple(files))


# -- the versions a filename may stand for -------------------------------------------


def versions_of(filename: str, project: str) -> set[str] | None:
    """Every version ``filename`` may be read as (pip's reading among them); None when
    none can be read."""
    found: set[str] = set()
    stem = filename
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) in (5, 6):
            found |= {parts[1], parts[1].replace("_", "-")}
        try:
            found.add(str(parse_wheel_filename(filename)[1]))
        except ValueError:
            pass
    else:
        try:
            found.add(str(parse_sdist_filename(filename)[1]))
        except ValueError:
            pass
        for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tar", ".tgz", ".tbz", ".zip"):
            if filename.lower().endswith(suffix):
                stem = filename[: -len(suffix)]
        for at, char in enumerate(stem):  # pip's _find_name_version_sep
            if char == "-" and canonicalize_name(stem[:at]) == project:
                found.add(stem[at + 1 :])
    return found or None


def _admitted(filename: str, project: str, pins: SpecifierSet) -> bool:
    """Whether the pins may admit the file: any reading of its version they admit, or
    none that can be read (taken as admitted: the set only grows)."""
    readings = versions_of(filename, project)
    if readings is None:
        return True
    for reading in readings:
        try:
            spelled = {reading, str(Version(reading))}
        except InvalidVersion:
            return True
        for version in spelled:
            try:
                if pins.contains(version, prereleases=True):
                    return True
            except (InvalidVersion, InvalidSpecifier, TypeError):
                return True
    return False


def pinned_set(listing: Listing, project: str, pin: str) -> list[str]:
    """The page's facts and its files the pin admits: what must stay the same."""
    pins = SpecifierSet(pin)
    admitted = {entry for name, entry in listing.files if _admitted(name, project, pins)}
    return [listing.facts, *sorted(admitted)]


def versions(listing: Listing, project: str) -> list[str]:
    """Every version the page's files may be read as, for saying what is new."""
    found: set[str] = set()
    for name, _ in listing.files:
        found |= versions_of(name, project) or set()
    return sorted(found)


def newest(versions: Iterable[str]) -> str | None:
    """The highest of ``versions`` (PEP 440 order; ones it cannot read sort first)."""

    def key(version: str) -> tuple[bool, Version | str]:
        try:
            return True, Version(version)
        except InvalidVersion:
            return False, version

    ordered = sorted(versions, key=key)
    return ordered[-1] if ordered else None


def described(old: Sequence[str], new: Sequence[str]) -> str:
    """What changed within the pins, for the summary: a file added, changed or gone."""

    def by_url(entries: Sequence[str]) -> dict[str, str]:
        loaded = (json.loads(e) for e in entries)
        return {str(e[0]): json.dumps(e) for e in loaded if isinstance(e[0], str)}

    before, after = by_url(old), by_url(new)
    for verb, urls in (
        ("a new candidate", [u for u in after if u not in before]),
        ("a changed candidate", [u for u in after if u in before and after[u] != before[u]]),
        ("a candidate gone", [u for u in before if u not in after]),
    ):
        if urls:
            return f"{verb} {unquote(posixpath.basename(urlsplit(urls[0]).path))}"
    return "its page's facts changed"


# -- the root pins -------------------------------------------------------------------


def root_pins(pip_args: Sequence[str], settings: Mapping[str, str]) -> dict[str, str]:
    """Canonical name -> the exact pins (``==1.0,===2``) the root requirements and
    constraints give it. ``settings``: pip's configuration and ``PIP_*`` values."""
    names = list(option_values(pip_args, reqfiles.ALL))
    for option in ("requirement", "constraint"):
        names += settings.get(option, "").split()
    lines = reqfiles.walk([n for n in names if not n.endswith(".toml")], reqfiles.ALL)
    found: dict[str, set[str]] = {}
    texts = [line.split()[0] for line in lines.lines if not line.is_option]
    for text in [*(token for _at, token in options.positionals(pip_args)), *texts]:
        for name, spec in _pins_of(text):
            found.setdefault(name, set()).add(spec)
    return {name: ",".join(sorted(specs)) for name, specs in found.items()}


def _pins_of(text: str) -> Iterable[tuple[str, str]]:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return
    if requirement.marker is not None or requirement.url:
        return
    name = str(canonicalize_name(requirement.name))
    for spec in requirement.specifier:
        if _is_pin(spec):
            yield name, str(spec)


def _is_pin(spec: Specifier) -> bool:
    return spec.operator == "===" or (spec.operator == "==" and not spec.version.endswith(".*"))
