"""What to drop from a partition, as small rules, and the pass that applies them.

Index pages are the only cache content that goes stale (every release changes
them, and every run revalidates them anyway); files, ``.metadata`` and built
wheels are immutable. Whatever can serve no run is always dropped: broken and
half-written entries, temporary leftovers, ``selfcheck/``, and the legacy
``http/`` directory once the partition's pip writes ``http-v2/``.

pipfresh's own derived data is pruned too: the store (``store-v1/<sha256>``,
wheels unpacked with their bytecode: rebuildable from the wheels in pip's cache
at the cost of unpacking and compiling) and saved resolutions
(``resolutions-v1/*.json``: a resolution to reuse once its index pages are
revalidated, rebuilt by any run that resolves).

A new policy is a new ``Rule``; ``prune()`` does not change.

Nothing is followed out of the partition: it is refused whole when a directory of
its layout is a link (``Partition.check``), and links planted among its files are
unlinked (the links themselves) before anything reads them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from pipfresh.cache import fs, lock, usage
from pipfresh.errors import CacheRootError, PipfreshError
from pipfresh.layout import RESOLUTIONS, STORE_LAYOUT, Partition
from pipfresh.pip import httpcache
from pipfresh.store.entries import Store

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
    f" and the {KEEP_RESOLUTIONS} newest saved resolutions",
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
        rules += [Unused(keep_runs), Resolutions(KEEP_RESOLUTIONS)]
    elif mode == "size":
        rules += [Resolutions(KEEP_RESOLUTIONS), SizeCap(max_size)]
    elif mode != "valid":
        raise PipfreshError(f"unknown prune mode {mode!r} (one of {', '.join(MODES)})")
    return rules


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``800k``, ``1000000``: bytes (powers of 1000)."""
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = raw, ""
    if raw and raw[-1] in units:
        number, unit = raw[:-1], raw[-1]
    try:
        value = float(number)
    except ValueError:
        raise PipfreshError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if value < 0:
        raise PipfreshError(f"not a size: {text!r}")
    return int(value * units[unit])


@dataclass
class PruneResult:
    removed: dict[str, int] = field(default_factory=dict)
    freed: int = 0

    def add(self, reason: str, freed: int, count: int = 1) -> None:
        self.removed[reason] = self.removed.get(reason, 0) + count
        self.freed += freed


def prune(
    partition: Partition,
    rules: Sequence[Rule],
    *,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> PruneResult:
    """Apply ``rules`` to the partition, alone (exclusive lock), never outside it."""
    partition.root.require_marked()
    partition.check()
    result = PruneResult()
    if not partition.path.is_dir():
        return result
    with lock.hold(partition.lock_file, shared=False, timeout=timeout, on_wait=on_wait):
        partition.check()  # again, now that no install can be changing it
        _remove_links(partition, result)
        pip_cache = partition.pip_cache
        legacy = _writes_http_v2(partition)
        candidates: list[Candidate] = []
        for http_dir in ("http", "http-v2"):
            directory = pip_cache / http_dir
            if not directory.is_dir() or directory.is_symlink():
                continue
            if http_dir == "http" and legacy:
                result.add("legacy-http", fs.remove_tree(directory))
                continue
            for entry in httpcache.iter_entry_files(directory):
                rel = usage.entry_rel(entry)
                candidates.append(Candidate(entry, *httpcache.check_entry(entry), rel=rel))
        selfcheck = pip_cache / "selfcheck"
        if selfcheck.is_dir() and not selfcheck.is_symlink():
            result.add("selfcheck", fs.remove_tree(selfcheck))
        candidates += _built_wheels(pip_cache)
        candidates += _store_entries(partition.state_dir / STORE_LAYOUT)
        candidates += _resolutions(partition.state_dir / RESOLUTIONS)
        for rule in rules:  # each rule sees what the rules before it kept
            rule.prepare(partition, candidates)
            kept = []
            for candidate in candidates:
                if rule.drops(candidate):
                    result.add(rule.reason, candidate.remove())
                else:
                    kept.append(candidate)
            candidates = kept
        _remove_leftovers(partition, result)
        fs.remove_empty_dirs(pip_cache)
    return result


def _writes_http_v2(partition: Partition) -> bool:
    recorded = partition.read_info().get("pip_version")
    try:
        return recorded is not None and Version(str(recorded)) >= Version("23.3")
    except InvalidVersion:
        return False


def _built_wheels(pip_cache: Path) -> list[Candidate]:
    """Wheels pip built; one that is not a readable zip would fail every install that picks it."""
    import zipfile

    wheels = pip_cache / "wheels"
    if not wheels.is_dir() or wheels.is_symlink():
        return []
    found = []
    for full, st in sorted(fs.walk(wheels), key=lambda found: found[0]):
        if full.endswith(".whl"):
            path = Path(full)
            ok = False
            if stat.S_ISREG(st.st_mode):  # never a link's target
                try:
                    with zipfile.ZipFile(path) as archive:
                        ok = any(n.endswith(".dist-info/WHEEL") for n in archive.namelist())
                except (OSError, zipfile.BadZipFile, ValueError):
                    pass
            problem = None if ok else httpcache.Problem.BAD_ARCHIVE
            rel = path.relative_to(pip_cache).as_posix()
            found.append(Candidate(None, None, problem, wheel=path, rel=rel))
    return found


def _store_entries(top: Path) -> list[Candidate]:
    """Store entries; one whose manifest is unreadable, whose files changed (by content)
    or are not this user's is broken.

    ``.tmp-*`` directories are adds that never finished (no install runs during a
    prune); anything else is not an entry the store would read.
    """
    if not top.is_dir() or top.is_symlink():
        return []
    store = Store(top)
    found = []
    for name in sorted(os.listdir(top)):
        path = top / name
        problem: httpcache.Problem | None = None
        if name.startswith(".tmp-"):
            problem = httpcache.Problem.TEMP_FILE
        elif path.is_symlink() or not path.is_dir() or not _is_sha256(name):
            problem = httpcache.Problem.STRAY_FILE
        elif store.verified(name) is None:  # hashed where not as recorded, then recorded
            problem = httpcache.Problem.BAD_ARCHIVE
        found.append(Candidate(None, None, problem, rel=usage.store_rel(name), store_entry=path))
    return found


def _is_sha256(name: str) -> bool:
    return len(name) == 64 and all(ch in "0123456789abcdef" for ch in name)


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


def _resolutions(top: Path) -> list[Candidate]:
    """Saved resolutions (``<digest>.json``, ``.tmp-*`` while being written); a link is stray."""
    if not top.is_dir() or top.is_symlink():
        return []
    found = []
    for name in sorted(os.listdir(top)):
        path = top / name
        if name.endswith(fs.TEMP_SUFFIX) or (path.is_dir() and not path.is_symlink()):
            continue  # ``_remove_leftovers`` takes the first; the second is not ours to judge
        problem = None
        if name.startswith(".tmp-"):
            problem = httpcache.Problem.TEMP_FILE  # a save that never finished
        elif path.is_symlink() or not name.endswith(".json"):
            problem = httpcache.Problem.STRAY_FILE
        found.append(Candidate(None, None, problem, resolution=path))
    return found


def _remove_links(partition: Partition, result: PruneResult) -> None:
    """Links among the partition's files (not in the store: its entries are its own):
    pipfresh and pip never make one, and reading one would read its target."""
    store = os.path.join(partition.state_dir, STORE_LAYOUT) + os.sep
    for path, st in fs.walk(partition.path):
        if stat.S_ISLNK(st.st_mode) and not path.startswith(store):
            result.add("link", fs.remove_file(path))


def _remove_leftovers(partition: Partition, result: PruneResult) -> None:
    """``*.tmp`` files: a write that never finished (pip's, or ours).

    Not inside the store: a wheel may ship a ``*.tmp`` file, and the store's own
    leftovers are its ``.tmp-*`` directories (``_store_entries``).
    """
    store = os.path.join(partition.state_dir, STORE_LAYOUT) + os.sep
    for path, _st in fs.walk(partition.path):
        if path.endswith(fs.TEMP_SUFFIX) and not path.startswith(store):
            result.add("temporary", fs.remove_file(path))


def purge(
    partition: Partition,
    *,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> int:
    """Empty one partition entirely; bytes freed."""
    partition.root.require_marked()
    if partition.path.parent != partition.root.partitions_dir:
        raise CacheRootError(f"refusing to purge {partition.path}: not a partition directory")
    partition.check()
    if not partition.path.is_dir():
        return 0
    with lock.hold(partition.lock_file, shared=False, timeout=timeout, on_wait=on_wait):
        partition.check()
        return fs.remove_tree(partition.path)
