"""Identical immutable files in several partitions share storage through hardlinks.

A pure-Python wheel downloaded under 3.11 and again under 3.12 lands at the same
relative path in both partitions (pip names HTTP entries by a hash of the URL).
Linking the second to the first makes four interpreters cost about what one
shared pip cache costs, while each partition stays a complete directory that CI
can save on its own (an archiver stores the content of a link it cannot pair).

Safe because pip never writes a cache file in place: it writes a temporary file
and renames it over the old one, which breaks the link instead of changing the
other partition's copy.

Only real files in real directories are shared: a sibling partition with a link
in its layout is left alone (``Partition.check``), every directory on the way to
a file is checked from the root down, and a link is never the source of a link.
"""

from __future__ import annotations

import filecmp
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.cache.scan import PartitionScan
from pipfresh.errors import LinkInCache
from pipfresh.layout import HTTP_V2, STORE_LAYOUT, Partition
from pipfresh.pip import httpcache


def _siblings(partition: Partition) -> list[Partition]:
    """The other partitions, but those pipfresh could only read through a link."""
    found = []
    for pid in partition.root.partition_ids():
        if pid == partition.id:
            continue
        try:
            found.append(partition.root.partition(pid).check())
        except LinkInCache:
            continue  # refused by the commands that act on it; nothing to share here
    return found


def sibling_stores(partition: Partition) -> list[Path]:
    """The stores of the other partitions (``store.sharing`` links identical files)."""
    stores = (p.state_dir / STORE_LAYOUT for p in _siblings(partition))
    return [s for s in stores if s.is_dir() and not s.is_symlink()]


def link_duplicates(partition: Partition, relpaths: Iterable[str]) -> int:
    """Replace each file that another partition holds identically by a link; bytes saved."""
    others = _siblings(partition)
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
        if not stat.S_ISREG(st.st_mode):
            continue
        for other in others:
            if _link_if_same(partition.root.path, mine, other.pip_cache / rel, st):
                saved += st.st_size
                break
    return saved


def _link_if_same(root: Path, mine: Path, theirs: Path, st: os.stat_result) -> bool:
    try:
        fs.require_real_dirs(root, mine.parent, theirs.parent)
        other = theirs.lstat()
        if not stat.S_ISREG(other.st_mode) or other.st_ino == st.st_ino:
            return False
        if other.st_size != st.st_size or other.st_dev != st.st_dev:
            return False
        if not filecmp.cmp(mine, theirs, shallow=False):
            return False
        fs.link_atomic(theirs, mine)
    except (OSError, LinkInCache):
        return False  # another filesystem, protected hardlinks, a concurrent prune: keep the copy
    return True


IMMUTABLE = frozenset({httpcache.Kind.WHEEL, httpcache.Kind.SDIST, httpcache.Kind.METADATA})


def seed_from_siblings(
    partition: Partition, http_dir: str, scan: PartitionScan | None = None
) -> int:
    """A partition's first run starts with the files its sibling partitions downloaded.

    pip names an entry by its URL, and a file behind a URL never changes, so a wheel,
    sdist or ``.metadata`` entry another partition holds is valid here too; pip only
    asks for URLs that fit this interpreter, the rest stay unused (and a ``recent``
    prune drops them). Index pages are not seeded: they are revalidated anyway. Runs
    only while the partition has no entries (as ``scan`` found it), so it costs
    nothing afterwards; what it seeds, the scan walks again when next read.
    """
    mine = partition.pip_cache / http_dir
    if http_dir != HTTP_V2:
        return 0
    if scan.has_files(mine) if scan else next(fs.walk(mine), None) is not None:
        return 0
    linked = 0
    for other in _siblings(partition):
        theirs = other.pip_cache / http_dir
        if not theirs.is_dir():
            continue
        for entry in httpcache.iter_entry_files(theirs):  # never enters a link
            if entry.meta is None or entry.body is None:
                continue
            response, problem = httpcache.check_entry(entry)
            if problem is not None or response is None or response.kind not in IMMUTABLE:
                continue
            dest = mine / entry.meta.relative_to(theirs)
            if _link_entry(partition.root.path, entry.meta, entry.body, dest):
                linked += 1
    if linked and scan:
        scan.refresh()
    return linked


def _link_entry(root: Path, meta: Path, body: Path, dest: Path) -> bool:
    """Body first, then metadata: pip uses an entry only once both are there."""
    dest_body = dest.with_name(dest.name + ".body")
    try:
        if os.path.lexists(dest) or os.path.lexists(dest_body):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.require_real_dirs(root, dest.parent)  # mkdir accepts a link to a directory
        os.link(body, dest_body, follow_symlinks=False)
        os.link(meta, dest, follow_symlinks=False)
    except (OSError, LinkInCache):
        return False  # another filesystem, protected hardlinks, a concurrent writer
    return True
