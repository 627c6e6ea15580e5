"""Walking, measuring and removing files in the cache, never through a link.

``os.walk`` does not enter a link to a directory (it is listed, not walked), and
every removal here unlinks a link itself: nothing outside the walked tree is read
or deleted, whatever someone planted inside the cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # pip's adjacent_tmp_file and our own atomic writes


def walk(top: str | Path, skip: Collection[str] = ()) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, lstat)`` of every file below ``top``, but for directories in ``skip``;
    files that vanish meanwhile are skipped."""
    for dirpath, dirnames, filenames in os.walk(top):
        if skip:
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                yield path, os.lstat(path)
            except OSError:
                continue


def remove_file(path: str | Path) -> int:
    """Unlink one file (or link); bytes freed, 0 when it was already gone."""
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:
        return 0
    return size


def remove_tree(path: str | Path) -> int:
    """Remove a directory tree; bytes freed. A link is unlinked, never followed."""
    if os.path.islink(path):
        return remove_file(path)
    size = sum(st.st_size for _path, st in walk(path))
    shutil.rmtree(path, ignore_errors=True)
    return size


def remove_temp_files(top: str | Path, skip: Collection[str] = ()) -> int:
    """Delete ``*.tmp`` files below ``top`` (not in ``skip``), writes that never finished;
    bytes freed. Only safe while no writer can be running (the partition held alone).
    """
    found = walk(top, skip)
    return sum(remove_file(path) for path, _st in found if path.endswith(TEMP_SUFFIX))
