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

The rules are in ``rules``: a new policy is a new ``Rule``; ``prune()`` does not change.

Nothing is followed out of the partition: it is refused whole when a directory of
its layout is a link (``Partition.check``), and links planted among its files are
unlinked (the links themselves) before anything reads them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from pipfresh.cache import fs, lock, usage
from pipfresh.cache.rules import (
    DEFAULT_KEEP_RUNS,
    DEFAULT_MAX_SIZE,
    DEFAULT_MODE,
    MODES,
    Candidate,
    Rule,
    rules_for,
)
from pipfresh.errors import CacheRootError, PipfreshError
from pipfresh.layout import (
    HTTP,
    HTTP_V2,
    RESOLUTIONS,
    SELFCHECK,
    STORE_LAYOUT,
    WHEELS,
    Partition,
)
from pipfresh.pip import httpcache
from pipfresh.store.entries import Store

__all__ = [  # the rules are named here too, for the CLI
    "DEFAULT_KEEP_RUNS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MODE",
    "MODES",
    "PruneResult",
    "parse_size",
    "preview",
    "prune",
    "purge",
    "rules_for",
]


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
        candidates = _scan(partition, _REMOVING, result)
        _decide(partition, rules, candidates, _REMOVING, result)
        _leftovers(_temp_files(partition), _REMOVING, result)
        fs.remove_empty_dirs(partition.pip_cache)
    return result


def preview(
    partition: Partition,
    modes: Mapping[str, Sequence[Rule]],
    *,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> dict[str, PruneResult]:
    """What ``prune`` would remove with each set of rules (``cache info``), removing
    nothing: one scan, under the shared lock (no prune changes the partition meanwhile).
    A store entry whose files changed is hashed again, as ``prune`` and an install do."""
    partition.root.require_marked()
    partition.check()
    if not partition.path.is_dir():
        return {mode: PruneResult() for mode in modes}
    with lock.hold(partition.lock_file, shared=True, timeout=timeout, on_wait=on_wait):
        partition.check()
        scanned, found = _Counting(), PruneResult()
        candidates = _scan(partition, scanned, found)
        temporary = _temp_files(partition)
        out = {}
        for mode, rules in modes.items():
            act, result = scanned.copy(), PruneResult(dict(found.removed), found.freed)
            _decide(partition, rules, candidates, act, result)
            _leftovers(temporary, act, result)
            out[mode] = result
    return out


class _Removing:
    """What a prune does with what it drops: removes it, and counts the bytes freed."""

    def file(self, path: str | Path) -> int:
        return fs.remove_file(path)

    def tree(self, path: str | Path) -> int:
        return fs.remove_tree(path)

    def candidate(self, candidate: Candidate) -> int:
        return candidate.remove()


class _Counting(_Removing):
    """What a preview does instead: counts the bytes, removes nothing; each file once
    (a rule's temporary file is a leftover too)."""

    def __init__(self, seen: set[str] | None = None) -> None:
        self.seen = set() if seen is None else seen

    def copy(self) -> _Counting:
        return _Counting(set(self.seen))

    def file(self, path: str | Path) -> int:
        key = os.fspath(path)
        if key in self.seen:
            return 0
        self.seen.add(key)
        try:
            return os.lstat(path).st_size
        except OSError:
            return 0

    def tree(self, path: str | Path) -> int:
        return sum(self.file(found) for found, _st in fs.walk(path))

    def candidate(self, candidate: Candidate) -> int:
        return sum(self.file(path) for path in candidate.files)


_REMOVING = _Removing()


def _scan(partition: Partition, act: _Removing, result: PruneResult) -> list[Candidate]:
    """Every entry a rule may judge; on the way, what serves no run whatever the rules
    (planted links, the legacy ``http/`` beside ``http-v2/``, ``selfcheck/``)."""
    _remove_links(partition, act, result)
    pip_cache = partition.pip_cache
    legacy = _writes_http_v2(partition)
    candidates: list[Candidate] = []
    for http_dir in (HTTP, HTTP_V2):
        directory = pip_cache / http_dir
        if not directory.is_dir() or directory.is_symlink():
            continue
        if http_dir == HTTP and legacy:
            result.add("legacy-http", act.tree(directory))
            continue
        for entry in httpcache.iter_entry_files(directory):
            rel = usage.entry_rel(entry)
            candidates.append(Candidate(entry, *httpcache.check_entry(entry), rel=rel))
    selfcheck = pip_cache / SELFCHECK
    if selfcheck.is_dir() and not selfcheck.is_symlink():
        result.add("selfcheck", act.tree(selfcheck))
    candidates += _built_wheels(pip_cache)
    candidates += _store_entries(partition.state_dir / STORE_LAYOUT)
    candidates += _resolutions(partition.state_dir / RESOLUTIONS)
    return candidates


def _decide(
    partition: Partition,
    rules: Sequence[Rule],
    candidates: Sequence[Candidate],
    act: _Removing,
    result: PruneResult,
) -> None:
    """Each rule in turn, seeing what the rules before it kept."""
    for rule in rules:
        rule.prepare(partition, candidates)
        kept = []
        for candidate in candidates:
            if rule.drops(candidate):
                result.add(rule.reason, act.candidate(candidate))
            else:
                kept.append(candidate)
        candidates = kept


def _writes_http_v2(partition: Partition) -> bool:
    recorded = partition.read_info().get("pip_version")
    try:
        return recorded is not None and Version(str(recorded)) >= Version("23.3")
    except InvalidVersion:
        return False


def _built_wheels(pip_cache: Path) -> list[Candidate]:
    """Wheels pip built; one that is not a readable zip would fail every install that picks it."""
    import zipfile

    wheels = pip_cache / WHEELS
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


def _resolutions(top: Path) -> list[Candidate]:
    """Saved resolutions (``<digest>.json``, ``.tmp-*`` while being written); a link is stray."""
    if not top.is_dir() or top.is_symlink():
        return []
    found = []
    for name in sorted(os.listdir(top)):
        path = top / name
        if name.endswith(fs.TEMP_SUFFIX) or (path.is_dir() and not path.is_symlink()):
            continue  # ``_temp_files`` has the first; the second is not ours to judge
        problem = None
        if name.startswith(".tmp-"):
            problem = httpcache.Problem.TEMP_FILE  # a save that never finished
        elif path.is_symlink() or not name.endswith(".json"):
            problem = httpcache.Problem.STRAY_FILE
        found.append(Candidate(None, None, problem, resolution=path))
    return found


def _remove_links(partition: Partition, act: _Removing, result: PruneResult) -> None:
    """Links among the partition's files (not in the store: its entries are its own):
    pipfresh and pip never make one, and reading one would read its target."""
    store = os.path.join(partition.state_dir, STORE_LAYOUT) + os.sep
    for path, st in fs.walk(partition.path):
        if stat.S_ISLNK(st.st_mode) and not path.startswith(store):
            result.add("link", act.file(path))


def _temp_files(partition: Partition) -> list[str]:
    """``*.tmp`` files: a write that never finished (pip's, or ours).

    Not inside the store: a wheel may ship a ``*.tmp`` file, and the store's own
    leftovers are its ``.tmp-*`` directories (``_store_entries``).
    """
    store = os.path.join(partition.state_dir, STORE_LAYOUT) + os.sep
    found = fs.walk(partition.path)
    return [p for p, _st in found if p.endswith(fs.TEMP_SUFFIX) and not p.startswith(store)]


def _leftovers(paths: Sequence[str], act: _Removing, result: PruneResult) -> None:
    for path in paths:
        result.add("temporary", act.file(path))


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
