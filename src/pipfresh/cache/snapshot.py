"""A cheap picture of pip's cache before and after a run.

Comparing two snapshots tells what pip fetched, rewrote and built during the
run without parsing anything pip prints: a file that appears or changes was
written by this run (pip always writes through a temporary file and a rename,
so a changed file has a new inode or mtime).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.layout import WATCHED


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    ino: int


Snapshot = dict[str, FileState]


def take(pip_cache: Path) -> Snapshot:
    """``relative path -> FileState`` for every file pip's run could add or change."""
    top = os.path.join(os.fspath(pip_cache), "")

    def enter(path: str) -> bool:
        return path[len(top) :].split(os.sep, 1)[0] in WATCHED

    return from_files(pip_cache, fs.walk(pip_cache, enter=enter))


def from_files(pip_cache: Path, found: Iterable[tuple[str, os.stat_result]]) -> Snapshot:
    """The snapshot of what a walk of (or below) ``pip_cache`` found: the files of the
    ``WATCHED`` buckets, temporary files aside."""
    top = os.path.join(os.fspath(pip_cache), "")
    result: Snapshot = {}
    for full, st in found:
        rel = full[len(top) :]
        if rel.split(os.sep, 1)[0] not in WATCHED or os.sep not in rel:
            continue
        if not full.endswith(fs.TEMP_SUFFIX) and not stat.S_ISDIR(st.st_mode):
            result[rel] = FileState(st.st_size, st.st_mtime_ns, st.st_ino)
    return result


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    """Paths that are new or different after the run."""
    return {path for path, state in after.items() if before.get(path) != state}
