"""A per-ABI store of unpacked wheels, each with its bytecode, addressed by sha256.

A partition is per interpreter ABI, so it is where unpacked wheels *and* their
``.pyc`` can be kept: bytecode is compiled once per ABI, by the target
interpreter, not on every install. Installs then clone, hardlink or copy from here.

Layout, inside the partition's ``pipfresh/`` directory::

    store-v1/<sha256>/tree/...              the wheel's files as in the archive, plus __pycache__
    store-v1/<sha256>/manifest.json         name, version, every file's sha256, size, mtime, mode
    store-v1/<sha256>/fingerprint-v1.json   every file's stat as pipfresh last verified it
    store-v1/.tmp-*                         entries (and fingerprints) being written (never read)

Adding is atomic: an entry is built under ``.tmp-*`` and renamed into place
complete, so a half-added wheel is never seen. Bytecode names its source
relative to the directory the source is installed into (``fancy/cli.py``, not
the staging path): the import system puts the installed path in its place when
it loads the ``.pyc`` (``_imp._fix_co_filename``, as for any cached module), so
one stored ``.pyc`` is valid in every target. Entries are immutable: their
files are read-only, and every file's content hash is in the manifest (hashed
while unpacking a wheel whose sha256 was checked, and as compiled for bytecode).
Hardlinked files share inodes with the store, so an edit through a target (or a
restore, or a chown) would change the store: before an entry is linked, each
file's stat is compared with the fingerprint pipfresh recorded (one ``stat``;
inode and ctime included, which ``os.utime`` cannot restore), and a file that
differs is hashed again. Matching content is used (its mode and mtime put back);
anything else, or a file this user does not own, and the entry is discarded and
added again. Linking sets the ctime of every file it links: an install records
the span of the clock it linked in (``linked-v1.json``, ``verify.Window``), and
a ctime in that span is the links', not an edit's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipfresh.layout import FINGERPRINT, LINKED, MANIFEST
from pipfresh.store.compile import Compiler
from pipfresh.store.verify import (
    Check,
    Fingerprint,
    Stat,
    Window,
    check_files,
    euid,
    fingerprint_text,
    not_owned,
    read_fingerprints,
    read_window,
    rehash,
    settle,
    window_text,
)

if TYPE_CHECKING:
    from pipfresh.store.adding import Adding
    from pipfresh.store.sharing import SiblingFiles

# Entries of an older layout are discarded and added again. 2: every file's sha256;
# 3: bytecode names its source relative to its scheme's directory (``installed_name``).
MANIFEST_VERSION = 3


@dataclass(frozen=True)
class Entry:
    """One stored wheel: its unpacked tree, the files in it and their bytecode."""

    path: Path
    sha256: str
    wheel_name: str
    files: Mapping[str, Stat]  # archive path -> stat, bytecode included
    pyc: Mapping[str, str]  # archive path of a .py -> archive path of its .pyc
    seen: Mapping[str, Fingerprint] = field(default_factory=dict, repr=False)  # as recorded
    window: Window | None = None  # when an install last linked it
    reverified: int = 0  # files the lookup that returned it hashed again (after a restore...)

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    @cached_property
    def _tree_prefix(self) -> str:
        return os.path.join(self.path, "tree") + os.sep

    def file(self, archive_path: str) -> str:
        """The stored file's path (called per installed file: string work only)."""
        return self._tree_prefix + archive_path

    def check(self, owner: int | None) -> Check:
        """Compare every file with its fingerprint; hash again those that differ.

        Changes nothing. A file (or directory) ``owner`` does not own is a problem
        whatever its content: its owner could change what a target links.
        """
        problem = not_owned(self.path, self._tree_prefix, self.files, owner)
        if problem is not None:
            return Check(problem, {}, [])
        return check_files(self._tree_prefix, self.files, self.seen, owner, self.window)

    def intact(self) -> bool:
        """Every file is this user's and holds what was stored (hashed if need be)."""
        check = self.check(euid())
        return check.problem is None and rehash(self._tree_prefix, self.files, check.differ) is None


class Store:
    """The wheel store of one partition."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entry_dir(self, sha256: str) -> Path:
        return self.path / sha256

    def holds(self, sha256: str) -> bool:
        """An entry is stored under ``sha256`` (checked when it is used, not here)."""
        return self.entry_dir(sha256).is_dir()

    def get(self, sha256: str) -> Entry | None:
        """The complete entry for ``sha256`` as recorded (not verified), or None when
        absent or unreadable."""
        path = self.entry_dir(sha256)
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if data.get("layout") != MANIFEST_VERSION:
                return None
            files = {}
            for rel, (size, mtime_ns, mode, digest) in data["files"].items():
                files[rel] = Stat(int(size), int(mtime_ns), int(mode), str(digest))
            pyc = dict(data["pyc"])
            wheel = str(data["wheel"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        seen, window = read_fingerprints(path, sha256), read_window(path, sha256)
        return Entry(path, sha256, wheel, files, pyc, seen=seen, window=window)

    def verified(self, sha256: str) -> Entry | None:
        """The entry for ``sha256`` if every file is this user's and holds what was stored.

        A file whose stat is not the fingerprint recorded (a restore, a chown, an
        edit) is hashed again; when it matches, its mode and mtime are put back and
        the entry's fingerprint is recorded anew, so it is hashed once.
        """
        looked = self.looked(sha256)
        return None if looked is None else self.confirmed(*looked)

    def looked(self, sha256: str) -> tuple[Entry, Check] | None:
        """The entry and one stat of each of its files (no content read), or None when
        it is absent, unreadable or cannot be used whatever its content."""
        entry = self.get(sha256)
        if entry is None:
            return None
        check = entry.check(euid())
        return None if check.problem is not None else (entry, check)

    def confirmed(self, entry: Entry, check: Check) -> Entry | None:
        """``entry`` once the files ``check`` found changed hold what was stored
        (hashed again, then settled and recorded), else None."""
        if not check.differ:
            return entry
        if rehash(entry.file(""), entry.files, check.differ) is not None:
            return None
        now = dict(check.now)
        try:
            for rel in check.differ:
                now[rel] = settle(entry.file(rel), entry.files[rel], check.now[rel])
        except OSError:
            return None
        self._record(entry, now)
        return replace(entry, seen=now, reverified=len(check.differ))

    def lookup(self, sha256: str) -> Entry | None:
        """``verified``, but an entry that is not is discarded (to be added again)."""
        entry = self.verified(sha256)
        if entry is None:
            self.discard_if_present(sha256)
        return entry

    def discard_if_present(self, sha256: str) -> None:
        """Discard an entry that cannot be used, if there is one: published entries are
        complete (atomic rename), so a damaged or foreign one would block adding the
        wheel again."""
        if os.path.lexists(self.entry_dir(sha256)):
            self.discard(sha256)

    @contextlib.contextmanager
    def linking(self, entries: Iterable[Entry]) -> Iterator[None]:
        """Link ``entries`` into a target inside; after, record for each the span of
        the clock the links were made in (``verify.Window``).

        ``os.link`` sets the ctime of every file it links, which must not make the next
        install hash them again; an edit in that span is the install's own window.
        Nothing is recorded when the body fails or the store cannot be written (the
        next install hashes those files again).
        """
        clock = _Clock.start(self.path)
        yield
        window = clock.stop() if clock is not None else None
        if window is None:
            return
        for entry in entries:
            self._write(entry, LINKED, window_text(entry.sha256, window))

    def _record(self, entry: Entry, seen: Mapping[str, Fingerprint]) -> None:
        self._write(entry, FINGERPRINT, fingerprint_text(entry.sha256, seen))

    def _write(self, entry: Entry, name: str, text: str) -> None:
        """Write one of an entry's records whole, then rename it in (a failure costs a
        hash)."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-fp-{entry.sha256[:16]}-", dir=self.path)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, entry.path / name)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def discard(self, sha256: str) -> None:
        """Remove an entry: renamed aside first, so no reader sees it half-deleted."""
        path = self.entry_dir(sha256)
        aside = self.path / f".tmp-discard-{sha256[:16]}-{os.getpid()}"
        try:
            os.rename(path, aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def add(self, wheels: Mapping[str, Path], compiler: Compiler) -> dict[str, Entry]:
        """Unpack ``{sha256: wheel}`` into the store, compile, and publish each atomically."""
        if not wheels:
            return {}
        with self.adding(compiler) as adding:
            for sha256, wheel in wheels.items():
                adding.submit(sha256, wheel)
            return adding.finish()

    def adding(
        self,
        compiler: Compiler,
        unpacked: Callable[[], None] | None = None,
        siblings: SiblingFiles | None = None,
    ) -> Adding:
        """Add wheels one by one as they arrive (``submit``), published together (``finish``);
        ``unpacked`` is called (from any thread) as each wheel is unpacked; a file
        ``siblings`` (other partitions' stores) hold identically is linked to theirs."""
        from pipfresh.store.adding import Adding  # it builds entries: imported when used

        return Adding(self, compiler, unpacked, siblings)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class _Clock:
    """The file system's clock, as the ctime a file of the store gets when touched
    (the clock ``os.link`` sets ctimes by, which may lag ``time.time``)."""

    path: str
    start_ns: int

    @classmethod
    def start(cls, store: Path) -> _Clock | None:
        path = os.path.join(store, f".tmp-clock-{os.getpid()}-{threading.get_ident()}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return cls(path, os.lstat(path).st_ctime_ns)
        except OSError:
            return None

    def stop(self) -> Window | None:
        """The span from ``start`` to now (None when the clock went back, or is gone)."""
        try:
            os.utime(self.path)
            end_ns = os.lstat(self.path).st_ctime_ns
        except OSError:
            return None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        return Window(self.start_ns, end_ns) if end_ns >= self.start_ns else None


def stored(store: Store, digests: Iterable[str]) -> dict[str, Entry]:
    """The intact entries among ``digests`` (``Store.lookup`` each), in this thread: the
    work is Python's and hashlib's on mostly small files, which hold the GIL (on 8
    threads it took twice as long)."""
    found = {d: store.lookup(d) for d in dict.fromkeys(digests)}
    return {d: e for d, e in found.items() if e is not None}


__all__ = [
    "Compiler",
    "Entry",
    "Store",
    "current_umask",
    "stored",
]
