"""Identical immutable files in several partitions share storage through hardlinks.

A pure-Python wheel downloaded under 3.11 and again under 3.12 lands at the same
relative path in both partitions (pip names HTTP entries by a hash of the URL).
Linking the second to the first makes four interpreters cost about what one
shared pip cache costs, while each partition stays a complete directory that CI
can save on its own (an archiver stores the content of a link it cannot pair).

Safe because pip never writes a cache file in place: it writes a temporary file
and renames it over the old one, which breaks the link instead of changing the
other partition's copy.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Iterable
from pathlib import Path

from .partition import Partition


def link_duplicates(partition: Partition, relpaths: Iterable[str]) -> int:
    """Replace each file that another partition holds identically by a link; bytes saved."""
    others = [p for p in partition.root.partitions() if p.id != partition.id]
    if not others:
        return 0
    saved = 0
    for rel in relpaths:
        mine = partition.pip_cache / rel
        try:
            st = mine.lstat()
        except OSError:
            continue
        if st.st_nlink > 1:
            continue
        for other in others:
            if _link_if_same(mine, other.pip_cache / rel, st):
                saved += st.st_size
                break
    return saved


def _link_if_same(mine: Path, theirs: Path, st: os.stat_result) -> bool:
    try:
        other = theirs.lstat()
        if other.st_ino == st.st_ino or other.st_size != st.st_size or other.st_dev != st.st_dev:
            return False
        if not filecmp.cmp(mine, theirs, shallow=False):
            return False
        tmp = mine.with_name(f"{mine.name}.{os.getpid()}.link.tmp")
        os.link(theirs, tmp)
        os.replace(tmp, mine)
    except OSError:
        return False  # another filesystem, protected hardlinks, a concurrent prune: keep the copy
    return True
