"""One walk of a partition, shared by everything that looks at it before pip runs.

Before pip, a run surveys the partition's owners and modes (``repair``), sweeps
temporary leftovers (``repair.remove_leftovers``), checks the HTTP cache's entries
(``health``), looks whether the partition is new (``share``) and snapshots pip's
cache (``snapshot``). Each used to walk the partition itself; a warm cache holds
tens of thousands of files, so now ``PartitionScan`` walks it once (``fs.walk``,
never through a link, the store's entries not entered) and each of them reads that.

What a step removes, it tells the scan (``forget``); a step that changes more than
it can tell (a repair, a first run's seeding) asks for a new walk (``refresh``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.cache.snapshot import Snapshot, from_files
from pipfresh.layout import HTTP, STORE_LAYOUT, Partition
from pipfresh.pip import httpcache

Found = tuple[str, os.stat_result]


class PartitionScan:
    """``(path, lstat)`` of everything below a partition, directories included, the
    store's directory itself but nothing in it. Walked on first use, so a scan can be
    made before ``Partition.check`` vets the layout."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition
        self.store = os.path.join(partition.state_dir, STORE_LAYOUT)
        self._found: dict[str, os.stat_result] | None = None

    @property
    def found(self) -> dict[str, os.stat_result]:
        if self._found is None:
            walked = fs.walk(self.partition.path, skip={self.store}, dirs=True)
            self._found = dict(walked)
        return self._found

    def refresh(self) -> None:
        """Walk again when it is next read (the partition changed more than ``forget`` says)."""
        self._found = None

    def forget(self, paths: Iterable[str | Path]) -> None:
        """Paths a step removed."""
        found = self.found
        for path in paths:
            found.pop(os.fspath(path), None)

    def below(self, directory: str | Path) -> Iterator[Found]:
        """What lies below ``directory`` (not the directory itself)."""
        prefix = os.path.join(os.fspath(directory), "")
        return ((p, st) for p, st in self.found.items() if p.startswith(prefix))

    def files_below(self, directory: str | Path) -> Iterator[Found]:
        """``below`` without the directories: what ``fs.walk(directory)`` yields."""
        return ((p, st) for p, st in self.below(directory) if not stat.S_ISDIR(st.st_mode))

    def leftovers(self) -> list[str]:
        """``*.tmp`` files outside the store: writes that never finished (or still run)."""
        return [p for p, st in self.files_below(self.partition.path) if p.endswith(fs.TEMP_SUFFIX)]

    def http_entries(self, http_dir: str) -> Iterator[httpcache.EntryFiles]:
        """``httpcache.iter_entry_files`` of ``pip/<http_dir>``, from this scan."""
        directory = self.partition.pip_cache / http_dir
        top, enter = os.fspath(directory), httpcache.hex_dirs(directory)
        found = [
            (p, st)
            for p, st in self.files_below(directory)
            if os.path.dirname(p) == top or enter(os.path.dirname(p))
        ]
        fmt: httpcache.Format = "http" if http_dir == HTTP else "http-v2"
        return httpcache.group_files(directory, fmt, found)

    def has_files(self, directory: str | Path) -> bool:
        return next(self.files_below(directory), None) is not None

    def snapshot(self) -> Snapshot:
        """``snapshot.take(pip_cache)``, from this scan."""
        return from_files(self.partition.pip_cache, self.files_below(self.partition.pip_cache))
