"""The rules of a prune, each a small class: what a ``Candidate`` is and which to drop.

A new policy is a new ``Rule``; ``prune.prune()`` does not change. Each rule sees
what the rules before it kept (``prepare`` once, then ``drops`` per candidate).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from pipfresh.cache import fs, usage
from pipfresh.errors import PipfreshError
from pipfresh.layout import Partition
from pipfresh.pip import httpcache
from pipfresh.store import bodies

Kind = httpcache.Kind


@dataclass(frozen=True)
class Candidate:
    """A cache entry and what reading it told us: an HTTP entry, a wheel pip built,
    a store entry or a saved resolution."""

    entry: httpcache.EntryFiles | None
    response: httpcache.CachedResponse | None
    problem: httpcache.Problem | None
    wheel: Path | None = None  # a wheel in ``wheels/``, built from an sdist
    rel: str = ""  # relative to pip's cache directory (or a store name), as ``usage`` names it
    store_entry: Path | None = None  # a store entry's directory, ``store-v1/<sha256>``
    resolution: Path | None = None  # a file in ``resolutions-v1/``

    @property
    def kind(self) -> httpcache.Kind | None:
        return self.response.kind if self.response is not None else None

    @property
    def files(self) -> tuple[Path, ...]:
        if self.entry is not None:
            return self.entry.paths
        if self.store_entry is not None:
            if self.store_entry.is_symlink():
                return (self.store_entry,)
            return tuple(Path(path) for path, _st in fs.walk(self.store_entry))
        single = self.wheel or self.resolution
        return (single,) if single is not None else ()

    @property
    def size(self) -> int:
        """Bytes on disk (a file hardlinked to another partition or a target counts in full)."""
        total = 0
        for path in self.files:
            try:
                total += path.lstat().st_size
            except OSError:
                pass
        return total

    def mtime(self) -> float:
        """When the entry was last written: its last use when no run recorded one."""
        latest = 0.0
        for path in self.files:
            try:
                latest = max(latest, path.lstat().st_mtime)
            except OSError:
                pass
        return latest

    def remove(self) -> int:
        if self.entry is not None:
            return httpcache.remove_entry(self.entry)
        if self.store_entry is not None:
            return _remove_store_entry(self.store_entry)
        single = self.wheel or self.resolution
        return fs.remove_file(single) if single is not None else 0


class Rule:
    """Decides, entry by entry, what a prune drops.

    ``prepare`` sees every entry the rules before it kept, once, before any
    ``drops``: a rule that needs the whole picture (a size cap) decides there.
    """

    reason = "rule"

    def prepare(self, partition: Partition, candidates: Sequence[Candidate]) -> None:
        """Look at the partition before deciding; most rules need not."""

    def drops(self, candidate: Candidate) -> bool:
        raise NotImplementedError


class Leftovers(Rule):
    """Temporary files of writes that never finished, and files pip never reads."""

    reason = "temporary"

    def drops(self, candidate: Candidate) -> bool:
        return candidate.problem in (httpcache.Problem.TEMP_FILE, httpcache.Problem.STRAY_FILE)


class Broken(Rule):
    """Unreadable, truncated, half-written, orphaned or leftover: serves no run."""

    reason = "broken"

    def drops(self, candidate: Candidate) -> bool:
        return candidate.problem is not None


class IndexPages(Rule):
    """Index and find-links pages: stale with every release, revalidated every run."""

    reason = "index-page"

    def drops(self, candidate: Candidate) -> bool:
        return candidate.kind is Kind.INDEX_PAGE


class Downloads(Rule):
    """Downloaded wheels, sdists and metadata: cheap for the next CI run to fetch again.

    Wheels built from sdists are kept (they live in ``wheels/``, not here): building
    is what is expensive. The same choice as ``uv cache prune --ci``.
    """

    reason = "download"

    def drops(self, candidate: Candidate) -> bool:
        return candidate.kind in (Kind.WHEEL, Kind.SDIST, Kind.METADATA)


class StoreEntries(Rule):
    """The whole store: derived data a CI archive need not carry.

    Every entry is rebuilt from the wheel in pip's cache (or fetched again) by
    unpacking and byte-compiling it, which costs less than carrying the
    unpacked files and their bytecode in every archive.
    """

    reason = "store"

    def drops(self, candidate: Candidate) -> bool:
        return candidate.store_entry is not None


class StoredBodies(Rule):
    """A downloaded wheel the store holds unpacked (the same sha256, the entry intact), on
    a partition whose pip's dry run downloads no wheel and whose last run installed through
    the store: one form of each wheel is enough.

    pip >= 25.3 returns from ``install --dry-run`` before downloading what PEP 658
    metadata let it resolve (``prepare_linked_requirements_more`` moved out of the
    resolver), and the store installs the wheel from its entry, so the body is read by
    no run that installs through the store. Older pips download every resolved wheel
    in the dry run: for them the body stays. pip itself, installed by pip, is never a
    store entry, so its wheel stays too. Only after the rules that drop store entries
    (``Unused``), never beside one that may drop them later (``SizeCap``): a wheel must
    keep one of its forms. A run that pip installs itself (an option the store does not
    take, ``PIPFRESH_INSTALLER=pip``, ``pipfresh download``) needs the bodies: after one,
    they stay; the first such run after a prune downloads them once.
    """

    reason = "stored"
    FIRST_PIP = bodies.FIRST_PIP

    def __init__(self) -> None:
        self.held: frozenset[str] = frozenset()

    def prepare(self, partition: Partition, candidates: Sequence[Candidate]) -> None:
        info = partition.read_info()
        pip = info.get("pip_version")
        if info.get("installer") != "store":
            return
        try:
            if pip is None or Version(str(pip)) < self.FIRST_PIP:
                return
        except InvalidVersion:
            return
        # Entries the scan found verified (``prune._store_entries``), the rules before kept.
        self.held = frozenset(
            c.store_entry.name
            for c in candidates
            if c.store_entry is not None and c.problem is None
        )

    def drops(self, candidate: Candidate) -> bool:
        entry = candidate.entry
        if not self.held or candidate.kind is not Kind.WHEEL or entry is None:
            return False
        if entry.body is None or entry.fmt != "http-v2":
            return False
        try:
            return fs.sha256(entry.body) in self.held
        except OSError:
            return False


class Resolutions(Rule):
    """Saved resolutions beyond the ``keep`` newest (by mtime): one per set of install inputs.

    Each is a small file; the newest few dozen cover the input sets a project
    installs, the rest are inputs nobody installs any more.
    """

    reason = "resolution"

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.drop: set[Path] = set()

    def prepare(self, partition: Partition, candidates: Sequence[Candidate]) -> None:
        saved = [c for c in candidates if c.resolution is not None]
        saved.sort(key=lambda c: (c.mtime(), str(c.resolution)), reverse=True)
        self.drop = {c.resolution for c in saved[self.keep :] if c.resolution is not None}

    def drops(self, candidate: Candidate) -> bool:
        return candidate.resolution in self.drop


class Unused(Rule):
    """What none of the last ``runs`` pipfresh runs on the partition used.

    The record (``usage``) travels with the cache, so in CI "the last runs" spans
    jobs. With no record at all there is nothing to go on, and nothing is dropped.
    Store entries are named in the record too (by their sha256); saved
    resolutions are not (``Resolutions`` keeps the newest).
    """

    reason = "unused"

    def __init__(self, runs: int) -> None:
        if runs < 1:
            raise PipfreshError("--keep-runs must be at least 1")
        self.runs = runs
        self.usage = usage.Usage()

    def prepare(self, partition: Partition, candidates: Sequence[Candidate]) -> None:
        self.usage = usage.load(partition)

    def drops(self, candidate: Candidate) -> bool:
        if self.usage.runs == 0 or candidate.resolution is not None:
            return False
        return not self.usage.used_within(candidate.rel, self.runs)


class SizeCap(Rule):
    """Store entries first, then everything else, each least recently used first,
    until what is left fits in ``max_bytes``.

    The store goes first because it is derived: an evicted entry is rebuilt from
    the wheel still in pip's cache, with no download. Last use comes from the
    usage record; an entry no run recorded counts as used when it was written.
    """

    reason = "over-size-cap"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.evict: set[str] = set()

    def prepare(self, partition: Partition, candidates: Sequence[Candidate]) -> None:
        record = usage.load(partition)
        sized = [(c, c.size) for c in candidates]
        total = sum(size for _, size in sized)
        order = sorted(
            sized,
            key=lambda cs: (
                cs[0].store_entry is None,  # False sorts first: the store is evicted first
                _last_use(record, cs[0]),
                -cs[1],
                cs[0].rel,
            ),
        )
        self.evict = set()
        for candidate, size in order:
            if total <= self.max_bytes:
                break
            self.evict.add(_identity(candidate))
            total -= size

    def drops(self, candidate: Candidate) -> bool:
        return _identity(candidate) in self.evict


def _identity(candidate: Candidate) -> str:
    """A name unique among candidates (saved resolutions have no usage name)."""
    return str(candidate.resolution) if candidate.resolution is not None else candidate.rel


def _last_use(record: usage.Usage, candidate: Candidate) -> float:
    seen = record.last_used(candidate.rel)
    return seen if seen is not None else candidate.mtime()


def _remove_store_entry(path: Path) -> int:
    """Renamed aside first (as ``Store.discard`` does), then removed, never through a link."""
    if path.is_symlink() or not path.is_dir():
        return fs.remove_file(path)
    aside = path.with_name(f".tmp-prune-{path.name[:16]}-{os.getpid()}")
    try:
        os.rename(path, aside)
    except OSError:
        return 0
    return fs.remove_tree(aside)


DEFAULT_MODE = "recent"
DEFAULT_KEEP_RUNS = 5
DEFAULT_MAX_SIZE = 1_000_000_000
KEEP_RESOLUTIONS = 32

#: ``pipfresh cache prune --mode``: what each keeps, beyond dropping what serves no run.
MODES = {
    "valid": "keep everything still valid, the store of unpacked wheels included",
    "ci": "also drop downloads (cheap to fetch again), the store and saved resolutions"
    " (derived); keep wheels built from sdists",
    "recent": "keep only what the last --keep-runs runs used, store entries included,"
    f" and the {KEEP_RESOLUTIONS} newest saved resolutions; drop downloaded wheels the store"
    " holds (pip >= 25.3 reads them in no store install)",
    "size": "evict least recently used entries, store entries first (derived), until the"
    " partition fits --max-size",
}


def rules_for(
    *,
    keep_index_pages: bool = False,
    ci: bool = False,
    mode: str = "valid",
    keep_runs: int = DEFAULT_KEEP_RUNS,
    max_size: int = DEFAULT_MAX_SIZE,
) -> list[Rule]:
    rules: list[Rule] = [Leftovers(), Broken()]
    if not keep_index_pages:
        rules.append(IndexPages())
    if ci or mode == "ci":
        rules += [Downloads(), StoreEntries(), Resolutions(0)]
    elif mode == "recent":
        rules += [Unused(keep_runs), Resolutions(KEEP_RESOLUTIONS), StoredBodies()]
    elif mode == "size":
        rules += [Resolutions(KEEP_RESOLUTIONS), SizeCap(max_size)]
    elif mode != "valid":
        raise PipfreshError(f"unknown prune mode {mode!r} (one of {', '.join(MODES)})")
    return rules
