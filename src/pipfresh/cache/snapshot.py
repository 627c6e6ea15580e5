"""A cheap picture of pip's cache before and after a run.

Comparing two snapshots tells what pip fetched, rewrote and built during the
run without parsing anything pip prints: a file that appears or changes was
written by this run (pip always writes through a temporary file and a rename,
so a changed file has a new inode or mtime).
"""

from __future__ import annotations

import os
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
    result: Snapshot = {}
    for bucket in WATCHED:
        top = pip_cache / bucket
        if not top.is_dir():
            continue
        for full, st in fs.walk(top):
            if not full.endswith(fs.TEMP_SUFFIX):
                rel = os.path.relpath(full, pip_cache)
                result[rel] = FileState(st.st_size, st.st_mtime_ns, st.st_ino)
    return result


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    """Paths that are new or different after the run."""
    return {path for path, state in after.items() if before.get(path) != state}
