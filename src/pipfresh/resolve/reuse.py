"""Reusing the last resolution when nothing it depended on has changed.

pip's dry run is most of a warm install. Its outcome is a function of the
inputs (pip and its arguments, requirement and constraint files, pip's
configuration and environment, the interpreter, what the target already has)
and of the index pages pip read. After a dry run pipfresh records the inputs'
digest, pip's report, and each page pip fetched (from pip's ``--log``) with its
validators (from pip's own cache entry). Next time, when the digest matches,
every page is revalidated at once with conditional requests; only when all of
them answer 304 Not Modified (or 404 again), or a changed page provably cannot
change pip's answer (``candidates``: it offers the same files within the root
pins), is the recorded report used, so a version published a second ago is still
seen where pip could pick it. Only a report
whose every hash its page lists is recorded: a page that lists no hashes would
answer 304 for a file replaced under the same URL.

Anything that could make the same pages resolve differently, or that pipfresh
cannot revalidate as pip would, means pip resolves as usual: find-links and
``--no-index`` (local listings), direct and file URLs, a relative
``--uploaded-prior-to``, credentials in an index URL, a page without
validators, an unreachable index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipfresh.cache import fs
from pipfresh.layout import RESOLUTIONS, Partition
from pipfresh.pip import httpcache, invoke, options
from pipfresh.pip.args import option_values
from pipfresh.pip.config import config_files
from pipfresh.resolve import candidates
from pipfresh.resolve.pagelog import _LOG_ENV, _LOG_OPTIONS, Listings, Page
from pipfresh.resolve.revalidate import Change
from pipfresh.target.interpreter import Target

# Options whose value names a file whose contents are part of the inputs.
_FILE_OPTIONS = options.named(options.INPUTS)
_LISTING_OPTIONS = options.named(options.LISTING)  # -f, --find-links, --no-index
# Environment that can change what pip sees, besides PIP_*.
_OTHER_ENV = ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "PYTHONHOME")


@dataclass(frozen=True)
class Inputs:
    """The digest of everything but the index that decides pip's resolution.

    ``digest`` is None when the resolution cannot be reused; ``reason`` says why.
    """

    digest: str | None
    reason: str | None = None


# -- the inputs ----------------------------------------------------------------------


def inputs(
    pip_args: Sequence[str], env: Mapping[str, str], target: Target, program: invoke.PipProgram
) -> Inputs:
    """The inputs' digest, or why this run's resolution cannot be reused."""
    args = _without_report(pip_args)
    why = _unsupported(args, env)
    if why is not None:
        return Inputs(None, why)
    digest = hashlib.sha256()

    def add(label: str, value: object) -> None:
        digest.update(json.dumps([label, value], sort_keys=True, default=str).encode())

    add("format", 2)
    add("pip", program.description)  # its version, and whose pip (never a path)
    add("args", args)
    facts = asdict(target.facts)
    add("target", {k: v for k, v in facts.items() if k not in _WHERE})
    add("env", sorted((k, v) for k, v in env.items() if _counts(k)))
    try:
        for place, path in enumerate(config_files(env, target.facts.prefix)):
            text = _read_or_none(path)
            if text is not None and "uploaded" in text:
                return Inputs(None, f"{path} sets an upload cut-off")
            add("config", [place, text])
        for path in _input_files(args, env):
            add("file", [str(path), path.read_text(encoding="utf-8", errors="surrogateescape")])
    except _Unsupported as exc:
        return Inputs(None, str(exc))
    except OSError as exc:
        return Inputs(None, f"cannot read {exc.filename}")
    site = _site_listing(target)
    if site is None:
        return Inputs(None, "the target sees system site-packages")
    add("site", site)
    return Inputs(digest.hexdigest())


# Where the target lives (not what it is): a fresh venv at another path, with the same
# interpreter and the same distributions, resolves the same way.
_WHERE = frozenset({"executable", "prefix", "purelib", "platlib", "pip_init"})


def _counts(name: str) -> bool:
    """Whether an environment variable can change what pip resolves (not where it caches)."""
    return (name.startswith("PIP_") and name != "PIP_CACHE_DIR") or name in _OTHER_ENV


class _Unsupported(Exception):
    """An input pipfresh cannot fingerprint, so the resolution is not reused."""


def _without_report(pip_args: Sequence[str]) -> list[str]:
    """The arguments without ``--report FILE``: where the report goes does not matter."""
    out: list[str] = []
    skip = False
    for token in pip_args:
        if skip:
            skip = False
        elif token == "--report":
            skip = True
        elif not token.startswith("--report="):
            out.append(token)
    return out


def _unsupported(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    for token in args:
        name = token.split("=", 1)[0]
        if name in _LOG_OPTIONS:
            return f"{name} given"
        if name.startswith("--uploaded-prior"):
            return "an upload cut-off can move with time"
        if name in _LISTING_OPTIONS or (name.startswith("-f") and not name.startswith("--")):
            return f"{name} (local listings cannot be revalidated)"
    for key in (*_LOG_ENV, "PIP_UPLOADED_PRIOR_TO", "PIP_NO_INDEX", "PIP_FIND_LINKS"):
        if env.get(key):
            return f"{key} is set"
    return None


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as exc:
        raise _Unsupported(f"cannot read {path}: {exc.strerror}") from exc


def _input_files(args: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """Requirement and constraint files, with the files they include, in order."""
    named = [Path(p) for p in (env.get("PIP_CONSTRAINT") or "").split()]
    named += [Path(p) for p in (env.get("PIP_REQUIREMENT") or "").split()]
    named += [Path(value) for value in option_values(args, _FILE_OPTIONS)]
    seen: list[Path] = []
    for path in named:
        _collect(path, seen)
    return seen


def _collect(path: Path, seen: list[Path]) -> None:
    if "://" in str(path):
        raise _Unsupported(f"{path} is a URL")
    real = path.resolve()
    if real in seen:
        return
    seen.append(real)
    text = real.read_text(encoding="utf-8", errors="surrogateescape")
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        words = line.replace("=", " ", 1).split()
        name = words[0]
        if name in _LISTING_OPTIONS or line.startswith("-f"):
            raise _Unsupported(f"{path} uses {name} (local listings cannot be revalidated)")
        for value in option_values(words, _FILE_OPTIONS):
            included = Path(value)
            _collect(included if included.is_absolute() else real.parent / included, seen)


def _site_listing(target: Target) -> list[str] | None:
    """What the target has installed, as names of its metadata and ``.pth`` files."""
    try:
        cfg = Path(target.facts.prefix, "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        cfg = ""
    if re.search(r"^\s*include-system-site-packages\s*=\s*true\s*$", cfg, re.M | re.I):
        return None
    listing: set[str] = set()
    for kind in ("purelib", "platlib"):
        directory = getattr(target.facts, kind)
        try:
            names = os.listdir(str(directory)) if directory else []
        except OSError:
            continue
        listing.update(
            f"{kind}/{n}"
            for n in names
            if n.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))
        )
    return sorted(listing)


# -- recording -----------------------------------------------------------------------


# 2: only resolutions whose hashes their pages list (``unattested``) are recorded.
# 3: the names pip's resolver spelled (older records are resolved again)
_FORMAT = 4  # 4: what each page offered (``Offer``), to judge a changed page


@dataclass(frozen=True)
class Offer:
    """What one page offered the recorded resolution: its project, the root pins of it
    (None: not pinned), the files within them (``candidates.pinned_set``; None: not
    pinned, or the page could not be read) and every version it listed."""

    project: str
    pin: str | None = None
    pinned: list[str] | None = None
    versions: list[str] | None = None

    @classmethod
    def of(cls, url: str, body: bytes | None, content_type: str, pins: Mapping[str, str]) -> Offer:
        project = Listings.project_of(url)
        pin = pins.get(project)
        listing = None if body is None else candidates.parse(body, content_type, url)
        if listing is None:
            return cls(project, pin)
        pinned = candidates.pinned_set(listing, project, pin) if pin else None
        return cls(project, pin, pinned, candidates.versions(listing, project))

    def change(self, change: Change) -> str | None:
        """Why pip must resolve after ``change`` to the page; None when pip's answer cannot
        differ (the page offers the same within the pins)."""
        now = Offer.of(
            change.page.url, change.body, change.content_type, {self.project: self.pin or ""}
        )
        new = candidates.newest(set(now.versions or ()) - set(self.versions or ()))
        if self.pin is None or self.pinned is None or now.pinned is None:
            if new is not None and self.versions is not None:
                return f"{self.project} has a new candidate {new}"
            if self.pin is None:
                return f"{self.project} is not pinned"
            return f"{self.project}'s page cannot be compared"
        if now.pinned == self.pinned:
            return None
        return f"{self.project} has {candidates.described(self.pinned, now.pinned)}"


def offers(pages: Sequence[Page], http_dir: Path, pins: Mapping[str, str]) -> dict[str, Offer]:
    """What each page pip read offered, from pip's cached copy."""
    found: dict[str, Offer] = {}
    for page in pages:
        body, media = None, ""
        if not page.missing:
            try:
                entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, page.url))
                media = httpcache.read_entry(entry).content_type
                body = httpcache.read_body(entry)
            except (OSError, ValueError, httpcache.CorruptEntry):
                body = None
        found[page.url] = Offer.of(page.url, body, media, pins)
    return found


def save(
    partition: Partition,
    digest: str,
    pages: Sequence[Page],
    report: Path | Mapping[str, Any],
    names: Mapping[str, str],
    offered: Mapping[str, Offer],
) -> None:
    """Record a resolution atomically (a reader never sees half a file), with each
    distribution's name as pip's resolver spelled it (what pip prints, and names
    headers after) and what each page offered."""
    data = {
        "format": _FORMAT,
        "pages": [asdict(p) for p in pages],
        "report": report
        if isinstance(report, Mapping)
        else json.loads(report.read_text(encoding="utf-8")),
        "names": dict(names),
        "offers": {url: asdict(o) for url, o in offered.items()},
    }
    _write(partition.state_dir / RESOLUTIONS / f"{digest}.json", json.dumps(data))


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a reader never sees half a file, and a copy that
    shares the old file's inode (a hardlinked backup) keeps the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.write_atomic(path, text)


@dataclass(frozen=True)
class Recorded:
    """A recorded resolution: the pages to revalidate, pip's report, the names, and
    what each page offered."""

    pages: list[Page]
    report: dict[str, Any]
    names: dict[str, str]
    offers: dict[str, Offer]

    def survives(self, changes: Sequence[Change]) -> tuple[str | None, list[str]]:
        """Why pip must resolve after these changes (``<url> changed: why``), None if the
        report stands; and the projects whose pages changed outside the pins."""
        outside: list[str] = []
        for change in changes:
            offer = self.offers.get(change.page.url)
            why = "changed" if change.what == "changed" else None
            if why is None or offer is None or change.body is None:
                return f"{change.page.url} {change.what}", outside
            reason = offer.change(change)
            if reason is not None:
                return f"{change.page.url} changed: {reason}", outside
            outside.append(offer.project)
        return None, outside


def load(partition: Partition, digest: str) -> Recorded | None:
    """The recorded resolution for these inputs; None if absent or unreadable."""
    path = partition.state_dir / RESOLUTIONS / f"{digest}.json"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        if data.get("format") != _FORMAT or not isinstance(data.get("report"), dict):
            return None
        pages = [Page(**p) for p in data["pages"]]
        names = {str(k): str(v) for k, v in data["names"].items()}
        offered = {str(url): Offer(**o) for url, o in data["offers"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not pages:
        return None
    try:  # last used, for `cache prune` (rewritten, not touched: see _write)
        _write(path, text)
    except OSError:
        pass
    return Recorded(pages, data["report"], names, offered)


def latest(partition: Partition) -> Recorded | None:
    """The partition's most recently recorded resolution, whatever its inputs (what a
    changed requirement file most likely reads again)."""
    try:
        found = [
            (p.stat().st_mtime_ns, p.stem)
            for p in (partition.state_dir / RESOLUTIONS).glob("*.json")
        ]
    except OSError:
        return None
    return load(partition, max(found)[1]) if found else None
