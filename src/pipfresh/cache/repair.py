"""Caches restored by another user, or read-only: repair what we can, say what we cannot.

pip disables a cache it cannot write (and, run as root, any cache root does not
own) with a warning that scrolls by, and an unwritable ``wheels/`` directory
makes it fail to build. A CI cache restored by another user (a container that
runs as root, a runner that does not) meets exactly that. Before pip runs, the
partition is surveyed: root takes ownership of it; another user makes its own
read-only directories writable again; anything else means pip runs without a
cache and a single line says why.

A link where the layout has a directory is refused first (``Partition.check``):
then pip runs without the cache. A link deeper down, among pip's files, is one pip
never makes and would follow (reading another file as a cached one, writing its
cache through it): it is unlinked, the link itself only.

Ownership never crosses users through a shared inode: root never chowns a file
with other links (it is replaced by a copy of its own), and never chowns the
store's files, which are linked into their owners' environments: the store
discards an entry holding a file that is not root's and adds it again.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.cache.scan import PartitionScan
from pipfresh.errors import CacheNotWritable
from pipfresh.layout import STORE_LAYOUT, Partition

_OWNER_RW = stat.S_IRUSR | stat.S_IWUSR
_OWNER_RWX = _OWNER_RW | stat.S_IXUSR


@dataclass(frozen=True)
class Finding:
    """A directory or file pip could not use as it is, or a link it would follow."""

    path: Path
    uid: int
    mode: int
    is_dir: bool
    is_link: bool = False
    links: int = 1


def _walk(
    top: Path, recursive: bool, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[Path, os.stat_result]]:
    """``top`` and (when ``recursive``) everything under it, directories included, never
    following a link (``fs.walk``). Directories in ``skip`` are yielded but not entered.
    """
    try:
        st = top.lstat()
    except OSError:
        return
    yield top, st
    if recursive and stat.S_ISDIR(st.st_mode):
        for path, child in fs.walk(top, skip, dirs=True):
            yield Path(path), child


def survey(
    top: Path, euid: int, *, recursive: bool = True, skip: frozenset[str] = frozenset()
) -> list[Finding]:
    """What under ``top`` this user cannot use: for root, whatever root does not own."""
    return _findings(top, euid, _walk(top, recursive, skip))


def _findings(top: Path, euid: int, walked: Iterable[tuple[Path, os.stat_result]]) -> list[Finding]:
    """``survey`` of what a walk of ``top`` (``top`` included) found."""
    found = []
    for path, st in walked:
        is_dir = stat.S_ISDIR(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            if path != top:  # the root may be a link (``CacheRoot.ensure`` vets it)
                found.append(Finding(path, st.st_uid, st.st_mode, False, is_link=True))
            continue
        if euid == 0:
            bad = st.st_uid != 0
        elif is_dir:
            bad = (st.st_mode & _OWNER_RWX) != _OWNER_RWX or st.st_uid != euid
            bad = bad and not os.access(path, os.R_OK | os.W_OK | os.X_OK)
        else:
            bad = not os.access(path, os.R_OK)
        if bad:
            found.append(Finding(path, st.st_uid, st.st_mode, is_dir, links=st.st_nlink))
    return found


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_usable(partition: Partition, scan: PartitionScan | None = None) -> str | None:
    """Make the partition usable by this user; a note of what was repaired, or None.

    Surveys what ``scan`` found (walked now if not yet); after a repair the scan is
    walked again when next read. Raises ``CacheNotWritable`` when it cannot be
    repaired (``LinkInCache`` for a link where the layout has a directory): pip must
    then run without it.
    """
    partition.check()
    scan = scan if scan is not None else PartitionScan(partition)
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: pip does not check owners
        return None
    euid = os.geteuid()
    if _read_only_fs(partition.path):
        raise CacheNotWritable(f"cache partition {partition.path} is on a read-only file system")
    links = _Links(partition, scan)
    notes = [_repair(partition, euid, links), links.note()]
    if any(notes):
        scan.refresh()
    return "; ".join(note for note in notes if note) or None


class _Links:
    """Links planted among the partition's files, unlinked as the surveys meet them."""

    def __init__(self, partition: Partition, scan: PartitionScan) -> None:
        self.partition = partition
        self.scan = scan
        self.removed = 0
        self.surveys = 0

    def survey(self, euid: int) -> list[Finding]:
        """``_survey_all`` without the links, which are gone once it returns."""
        if self.surveys:
            self.scan.refresh()  # the first survey reads the scan; after a repair, walk again
        self.surveys += 1
        found = []
        for f in _survey_all(self.partition, euid, self.scan):
            if not f.is_link:
                found.append(f)
                continue
            try:
                os.unlink(f.path)  # the link itself; its target is not ours
            except FileNotFoundError:
                continue
            self.removed += 1
        return found

    def note(self) -> str | None:
        if not self.removed:
            return None
        return (
            f"removed {self.removed} symlinks planted in {self.partition.path} "
            "(pip would follow them out of the cache)"
        )


def _repair(partition: Partition, euid: int, links: _Links) -> str | None:
    found = links.survey(euid)
    if not found:
        return None
    if euid == 0:
        # pip, run as root, disables any cache directory that root does not own.
        owners = ", ".join(str(u) for u in sorted({f.uid for f in found}))
        for f in found:
            _take_over(f)
        return f"took ownership of {len(found)} entries in {partition.path} (owned by uid {owners})"
    root = partition.root.path
    repaired = 0
    for _round in range(16):  # a directory made readable may reveal more below it
        foreign = [f for f in found if f.is_dir and f.uid != euid]
        if foreign:
            owners = ", ".join(str(u) for u in sorted({f.uid for f in foreign}))
            raise CacheNotWritable(
                f"{len(foreign)} directories of cache partition {partition.path} belong to uid "
                f"{owners} and are not writable by uid {euid} (fix: chown -R {euid} {root})"
            )
        for f in sorted(found, key=lambda f: (not f.is_dir, len(f.path.parts))):
            if f.uid == euid:  # ours, only read-only: a restored archive's modes
                os.chmod(f.path, f.mode | (_OWNER_RWX if f.is_dir else _OWNER_RW))
            else:  # another user's unreadable file in our directory: pip fetches it again
                os.unlink(f.path)
            repaired += 1
        found = links.survey(euid)
        if not found:
            break
    if found:
        raise CacheNotWritable(f"cannot repair the permissions in {partition.path}")
    return f"repaired the permissions of {repaired} entries in {partition.path}"


def _take_over(f: Finding) -> None:
    """Make a finding root's. A file with other links is copied instead: chowning it
    would hand root every other path to that inode (another user's, perhaps)."""
    if f.is_dir or f.links <= 1 or stat.S_ISLNK(f.mode):
        os.lchown(f.path, 0, 0)
        return
    tmp = f.path.with_name(f"{f.path.name}.{os.getpid()}.own.tmp")
    try:
        shutil.copy2(f.path, tmp, follow_symlinks=False)
        os.replace(tmp, f.path)
    except OSError:
        fs.remove_file(tmp)
        raise


def _survey_all(partition: Partition, euid: int, scan: PartitionScan) -> list[Finding]:
    store = partition.state_dir / STORE_LAYOUT
    return (
        survey(partition.root.path, euid, recursive=False)
        + survey(partition.lock_file.parent, euid)
        + _findings(partition.path, euid, _scanned(partition.path, scan))
        + _survey_store(store, euid)
    )


def _scanned(top: Path, scan: PartitionScan) -> Iterator[tuple[Path, os.stat_result]]:
    """``_walk(top, True, skip the store)`` from the scan."""
    try:
        st = top.lstat()
    except OSError:
        return
    yield top, st
    if stat.S_ISDIR(st.st_mode):
        for path, child in scan.below(top):
            yield Path(path), child


def _survey_store(store: Path, euid: int) -> list[Finding]:
    """The store's entries, each by its top directory; one that is not right, whole.

    The store holds tens of thousands of files and checks every file of an entry
    (owner included) before linking it (store.py), so every run looks one level
    deep only, for the directories pip's user must be able to write. Root looks at
    the store's own directory only: it may write anywhere, and the store's files
    are linked into their owners' environments (never chowned: ``Store.lookup``
    replaces an entry holding a file that is not root's).
    """
    if euid == 0:
        return survey(store, euid, recursive=False)
    try:
        children = [Path(e.path) for e in os.scandir(store) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    found: list[Finding] = []
    for child in children:
        if survey(child, euid, recursive=False):
            found += survey(child, euid)
    return found


def remove_leftovers(partition: Partition, scan: PartitionScan | None = None) -> int:
    """Delete ``*.tmp`` files (found by ``scan``), writes that never finished; bytes freed.

    Call only while holding the partition alone: then no pip is writing, and every
    temporary file is dead weight (pip never removes its own after a full disk).
    """
    store = partition.state_dir / STORE_LAYOUT  # a wheel may ship a *.tmp file of its own
    if scan is None:
        freed = fs.remove_temp_files(partition.path, skip={str(store)})
    else:
        temps = scan.leftovers()
        freed = sum(fs.remove_file(path) for path in temps)
        scan.forget(temps)
    return freed + _remove_store_staging(store) + _remove_dead_writers_files(partition.root.probes)


def _remove_store_staging(store: Path) -> int:
    """The store's ``.tmp-*`` staging: adds (and records, and link clocks) that never finished
    (directories, files) and plans whose write never finished (``install.Plan.save``)."""
    try:
        names = [n for n in os.listdir(store) if n.startswith(".tmp-")]
    except OSError:
        return 0
    freed = 0
    for name in names:
        path = store / name
        is_dir = path.is_dir() and not path.is_symlink()
        freed += fs.remove_tree(path) if is_dir else fs.remove_file(path)
    return freed


def _remove_dead_writers_files(directory: Path) -> int:
    """``<name>.<pid>.tmp`` files whose writer is gone (the probe cache is shared, unlocked)."""
    freed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        parts = name.split(".")
        if len(parts) < 3 or parts[-1] != "tmp" or not parts[-2].isdigit():
            continue
        if _alive(int(parts[-2])):
            continue
        path = directory / name
        try:
            size = path.lstat().st_size
            path.unlink()
        except OSError:
            continue
        freed += size
    return freed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True
