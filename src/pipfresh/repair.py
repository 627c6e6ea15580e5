"""Caches restored by another user, or read-only: repair what we can, say what we cannot.

pip disables a cache it cannot write (and, run as root, any cache root does not
own) with a warning that scrolls by, and an unwritable ``wheels/`` directory
makes it fail to build. A CI cache restored by another user (a container that
runs as root, a runner that does not) meets exactly that. Before pip runs, the
partition is surveyed: root takes ownership of it; another user makes its own
read-only directories writable again; anything else means pip runs without a
cache and a single line says why.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import files
from .errors import CacheNotWritable
from .partition import Partition
from .store import STORE_LAYOUT

_OWNER_RW = stat.S_IRUSR | stat.S_IWUSR
_OWNER_RWX = _OWNER_RW | stat.S_IXUSR


@dataclass(frozen=True)
class Finding:
    """A directory or file pip could not use as it is."""

    path: Path
    uid: int
    mode: int
    is_dir: bool


def _walk(
    top: Path, recursive: bool, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[Path, os.stat_result]]:
    """``top`` and (when ``recursive``) everything under it, never following a link.

    Directories in ``skip`` are yielded themselves but not entered.
    """
    try:
        yield top, top.lstat()
    except OSError:
        return
    stack = [top] if recursive else []
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # unreadable: reported by its own stat
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            yield Path(entry.path), st
            if stat.S_ISDIR(st.st_mode) and entry.path not in skip:
                stack.append(Path(entry.path))


def survey(
    top: Path, euid: int, *, recursive: bool = True, skip: frozenset[str] = frozenset()
) -> list[Finding]:
    """What under ``top`` this user cannot use: for root, whatever root does not own."""
    found = []
    for path, st in _walk(top, recursive, skip):
        is_dir = stat.S_ISDIR(st.st_mode)
        if euid == 0:
            bad = st.st_uid != 0
        elif is_dir:
            bad = (st.st_mode & _OWNER_RWX) != _OWNER_RWX or st.st_uid != euid
            bad = bad and not os.access(path, os.R_OK | os.W_OK | os.X_OK)
        else:
            bad = not os.access(path, os.R_OK)
        if bad:
            found.append(Finding(path, st.st_uid, st.st_mode, is_dir))
    return found


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_usable(partition: Partition) -> str | None:
    """Make the partition usable by this user; a note of what was repaired, or None.

    Raises ``CacheNotWritable`` when it cannot be repaired: pip must then run without it.
    """
    root = partition.root.path
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: pip does not check owners
        return None
    euid = os.geteuid()
    if _read_only_fs(partition.path):
        raise CacheNotWritable(f"cache partition {partition.path} is on a read-only file system")
    found = _survey_all(partition, euid)
    if not found:
        return None
    if euid == 0:
        # pip, run as root, disables any cache directory that root does not own.
        owners = ", ".join(str(u) for u in sorted({f.uid for f in found}))
        for f in found:
            os.lchown(f.path, 0, 0)
        return f"took ownership of {len(found)} entries in {partition.path} (owned by uid {owners})"
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
        found = _survey_all(partition, euid)
        if not found:
            break
    if found:
        raise CacheNotWritable(f"cannot repair the permissions in {partition.path}")
    return f"repaired the permissions of {repaired} entries in {partition.path}"


def _survey_all(partition: Partition, euid: int) -> list[Finding]:
    store = partition.state_dir / STORE_LAYOUT
    return (
        survey(partition.root.path, euid, recursive=False)
        + survey(partition.lock_file.parent, euid)
        + survey(partition.path, euid, skip=frozenset({str(store)}))
        + _survey_store(store, euid)
    )


def _survey_store(store: Path, euid: int) -> list[Finding]:
    """The store's entries, each by its top directory; one that is not right, whole.

    The store holds tens of thousands of files and checks its own entries before
    every link (store.py), so every run looks one level deep only: a restore by
    another user changes the owner of whole entries, never of single files in them.
    """
    try:
        children = [Path(e.path) for e in os.scandir(store) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    found: list[Finding] = []
    for child in children:
        if survey(child, euid, recursive=False):
            found += survey(child, euid)
    return found


def remove_leftovers(partition: Partition) -> int:
    """Delete ``*.tmp`` files, writes that never finished; bytes freed.

    Call only while holding the partition alone: then no pip is writing, and every
    temporary file is dead weight (pip never removes its own after a full disk).
    """
    store = partition.state_dir / STORE_LAYOUT  # a wheel may ship a *.tmp file of its own
    return (
        files.remove_temp_files(partition.path, skip={str(store)})
        + _remove_store_staging(store)
        + _remove_dead_writers_files(partition.root.probes)
    )


def _remove_store_staging(store: Path) -> int:
    """The store's ``.tmp-*`` staging: adds that never finished (directories) and plans
    whose write never finished (files, ``install.Plan.save``)."""
    try:
        names = [n for n in os.listdir(store) if n.startswith(".tmp-")]
    except OSError:
        return 0
    paths = [store / name for name in names]
    return sum(files.remove_tree(p) if p.is_dir() else files.remove_file(p) for p in paths)


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
