"""A wheel's files that another partition's store holds already are linked, not copied.

A pure wheel installed under 3.11 and 3.12 is stored in both partitions, and two
builds of one release for two Python versions share most of their files (sources,
data, licences); only the bytecode and the extension modules differ. A file being
added whose content another partition's store holds is replaced by a hardlink to
that file as soon as it is written, before it is compiled, so the bytecode is
compiled against the shared file's mtime. Each partition stays a complete
directory to save and restore on its own (an archiver stores a link's content when
the other name is not in the archive).

Only a file identical byte for byte (compared, not trusted from the other
manifest), with the same permissions, the same owner, in a real directory of the
other store, is linked. A shared inode changes for both stores at once: a link made
through either changes its ctime, so the other partition's next install hashes it
again before use (its fingerprint no longer matches); an edit of its content is
found by both.
"""

from __future__ import annotations

import filecmp
import json
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from pipfresh.cache import fs
from pipfresh.errors import LinkInCache
from pipfresh.layout import MANIFEST

_MAX_LINKS = 30_000  # ext4 allows 65,000 links to an inode: leave room for the venvs'
_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class _Held(NamedTuple):
    """A file another store holds: where, and the store it is in."""

    path: str
    store: str


class SiblingFiles:
    """The files of other partitions' stores (``stores()``), by content (their manifests'
    sha256), read once, when the first file is added."""

    def __init__(self, stores: Callable[[], Sequence[Path]]) -> None:
        self._stores = stores  # called once, when a file is first added: a warm run never does
        self._index: dict[str, _Held] | None = None
        self._lock = threading.Lock()

    def link(self, dest: str, sha256: str, owner: int | None) -> bool:
        """Replace ``dest`` (just written with content ``sha256``, read by nothing yet)
        by a link to an identical file of another store; whether it was."""
        held = self._held().get(sha256)
        if held is None:
            return False
        try:
            mine, theirs = os.lstat(dest), os.lstat(held.path)
            if not stat.S_ISREG(theirs.st_mode) or theirs.st_nlink >= _MAX_LINKS:
                return False
            if theirs.st_size != mine.st_size or theirs.st_dev != mine.st_dev:
                return False
            if owner is not None and theirs.st_uid != owner:
                return False
            # The mode it will have once published (read-only) must be theirs already.
            if stat.S_IMODE(mine.st_mode) & ~_WRITE != stat.S_IMODE(theirs.st_mode):
                return False
            fs.require_real_dirs(held.store, os.path.dirname(held.path))
            if not filecmp.cmp(dest, held.path, shallow=False):
                return False
            fs.link_atomic(held.path, dest)
        except (OSError, ValueError, LinkInCache):
            return False  # another filesystem, protected hardlinks, a concurrent prune
        return True

    def _held(self) -> dict[str, _Held]:
        with self._lock:
            if self._index is None:
                self._index = {}
                for store in self._stores():
                    _read_store(str(store), self._index)
            return self._index


def _read_store(store: str, index: dict[str, _Held]) -> None:
    """Every wheel file (not bytecode) of the published entries of ``store``."""
    try:
        names = os.listdir(store)
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue  # being added, or left by an add that never finished
        entry = os.path.join(store, name)
        try:
            with open(os.path.join(entry, MANIFEST), encoding="utf-8") as fp:
                manifest = json.load(fp)
            bytecode = set(manifest["pyc"].values())
            files = manifest["files"].items()
            for rel, (_size, _mtime, _mode, sha256) in files:
                if rel not in bytecode and sha256 not in index:
                    index[sha256] = _Held(os.path.join(entry, "tree", *rel.split("/")), store)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not an entry to share from
