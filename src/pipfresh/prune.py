"""What to drop from a partition, as small rules, and the pass that applies them.

Index pages are the only cache content that goes stale (every release changes
them, and every run revalidates them anyway); files, ``.metadata`` and built
wheels are immutable. Whatever can serve no run is always dropped: broken and
half-written entries, temporary leftovers, ``selfcheck/``, and the legacy
``http/`` directory once the partition's pip writes ``http-v2/``.

A new policy is a new ``Rule``; ``prune()`` does not change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from . import httpcache, lock
from .errors import CacheRootError
from .partition import Partition

Kind = httpcache.Kind


@dataclass(frozen=True)
class Candidate:
    """A cache entry and what reading it told us."""

    entry: httpcache.EntryFiles
    response: httpcache.CachedResponse | None
    problem: httpcache.Problem | None

    @property
    def kind(self) -> httpcache.Kind | None:
        return self.response.kind if self.response is not None else None


class Rule:
    """Decides, entry by entry, what a prune drops."""

    reason = "rule"

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


def rules_for(*, keep_index_pages: bool = False, ci: bool = False) -> list[Rule]:
    rules: list[Rule] = [Leftovers(), Broken()]
    if not keep_index_pages:
        rules.append(IndexPages())
    if ci:
        rules.append(Downloads())
    return rules


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
    result = PruneResult()
    if not partition.path.is_dir():
        return result
    with lock.hold(partition.lock_file, shared=False, timeout=timeout, on_wait=on_wait):
        pip_cache = partition.pip_cache
        legacy = _writes_http_v2(partition)
        for http_dir in ("http", "http-v2"):
            directory = pip_cache / http_dir
            if not directory.is_dir() or directory.is_symlink():
                continue
            if http_dir == "http" and legacy:
                result.add("legacy-http", _remove_tree(directory))
                continue
            for entry in httpcache.iter_entry_files(directory):
                candidate = Candidate(entry, *httpcache.check_entry(entry))
                for rule in rules:
                    if rule.drops(candidate):
                        result.add(rule.reason, httpcache.remove_entry(entry))
                        break
        selfcheck = pip_cache / "selfcheck"
        if selfcheck.is_dir() and not selfcheck.is_symlink():
            result.add("selfcheck", _remove_tree(selfcheck))
        _prune_built_wheels(pip_cache / "wheels", result)
        _remove_leftovers(partition.path, result)
        _remove_empty_dirs(pip_cache)
    return result


def _writes_http_v2(partition: Partition) -> bool:
    recorded = partition.read_info().get("pip_version")
    try:
        return recorded is not None and Version(str(recorded)) >= Version("23.3")
    except InvalidVersion:
        return False


def _prune_built_wheels(wheels: Path, result: PruneResult) -> None:
    """A built wheel that is not a readable zip would fail every install that picks it."""
    import zipfile

    if not wheels.is_dir() or wheels.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(wheels):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            if not name.endswith(".whl"):
                continue
            path = Path(dirpath, name)
            try:
                with zipfile.ZipFile(path) as archive:
                    ok = any(n.endswith(".dist-info/WHEEL") for n in archive.namelist())
            except (OSError, zipfile.BadZipFile, ValueError):
                ok = False
            if not ok:
                result.add("broken", _remove_file(path))


def _remove_leftovers(top: Path, result: PruneResult) -> None:
    """``*.tmp`` files: a write that never finished (pip's, or ours)."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            if name.endswith(".tmp"):
                result.add("temporary", _remove_file(Path(dirpath, name)))


def _remove_empty_dirs(top: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(top, topdown=False):
        if dirpath == str(top) or os.path.islink(dirpath):
            continue
        try:
            os.rmdir(dirpath)
        except OSError:
            pass  # not empty


def _remove_file(path: Path) -> int:
    try:
        size = path.lstat().st_size
        path.unlink()
    except OSError:
        return 0
    return size


def _remove_tree(path: Path) -> int:
    """Remove a directory tree inside a partition; links are removed, never followed."""
    size = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
    return size


def purge(
    partition: Partition,
    *,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> int:
    """Empty one partition entirely; bytes freed."""
    partition.root.require_marked()
    path = partition.path
    if path.is_symlink() or path.parent != partition.root.partitions_dir:
        raise CacheRootError(f"refusing to purge {path}: not a partition directory")
    if not path.is_dir():
        return 0
    with lock.hold(partition.lock_file, shared=False, timeout=timeout, on_wait=on_wait):
        return _remove_tree(path)
