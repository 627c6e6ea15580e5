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
added again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, NamedTuple

from pipfresh.errors import PipfreshError
from pipfresh.layout import FINGERPRINT, MANIFEST
from pipfresh.layout import STORE_LAYOUT as STORE_LAYOUT  # re-exported: callers name it here
from pipfresh.pip import process
from pipfresh.store import wheelcheck

# Entries of an older layout are discarded and added again. 2: every file's sha256;
# 3: bytecode names its source relative to its scheme's directory (``installed_name``).
_MANIFEST_VERSION = 3
_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class StoreError(PipfreshError):
    """A wheel could not be added to the store."""


@dataclass(frozen=True)
class Stat:
    """A stored file as its manifest records it: the content stored, and its stat then."""

    size: int
    mtime_ns: int
    mode: int
    sha256: str


@dataclass(frozen=True)
class Fingerprint:
    """A stored file's stat as pipfresh last saw it with its content verified.

    An edit, a restore or a chown changes it: the inode and ctime are what
    ``os.utime`` cannot put back. ``os.link`` changes the ctime too, so installs
    record it again after linking (``Store.linked``).
    """

    size: int
    mtime_ns: int
    mode: int
    uid: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        mode = stat.S_IMODE(st.st_mode)
        return cls(st.st_size, st.st_mtime_ns, mode, st.st_uid, st.st_ino, st.st_ctime_ns)


@dataclass(frozen=True)
class Check:
    """One look at an entry: why it cannot be used (None: it can), every file's
    fingerprint now, and the files hashed again because it was not the recorded one."""

    problem: str | None
    now: Mapping[str, Fingerprint]
    rehashed: list[str]


@dataclass(frozen=True)
class Entry:
    """One stored wheel: its unpacked tree, the files in it and their bytecode."""

    path: Path
    sha256: str
    wheel_name: str
    files: Mapping[str, Stat]  # archive path -> stat, bytecode included
    pyc: Mapping[str, str]  # archive path of a .py -> archive path of its .pyc
    seen: Mapping[str, Fingerprint] = field(default_factory=dict, repr=False)  # as recorded
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

    def check(self, euid: int | None) -> Check:
        """Compare every file with its fingerprint; hash again those that differ.

        Changes nothing. A file (or directory) ``euid`` does not own is a problem
        whatever its content: its owner could change what a target links.
        """
        problem = self._not_owned(euid)
        if problem is not None:
            return Check(problem, {}, [])
        prefix = self._tree_prefix
        now: dict[str, Fingerprint] = {}
        differ = []
        for rel, stored in self.files.items():
            try:
                st = os.lstat(prefix + rel)
            except OSError:
                return Check(f"{rel} is missing", {}, [])
            if not stat.S_ISREG(st.st_mode) or st.st_size != stored.size:
                return Check(f"{rel} changed", {}, [])
            if euid is not None and st.st_uid != euid:
                return Check(f"{rel} belongs to uid {st.st_uid}", {}, [])
            now[rel] = Fingerprint.of(st)
            if self.seen.get(rel) != now[rel]:
                differ.append(rel)
        for rel in differ:
            if _sha256_of(prefix + rel) != self.files[rel].sha256:
                return Check(f"{rel} changed", {}, [])
        return Check(None, now, differ)

    def intact(self) -> bool:
        """Every file is this user's and holds what was stored (hashed if need be)."""
        return self.check(_euid()).problem is None

    def _not_owned(self, euid: int | None) -> str | None:
        """A directory or metadata file of the entry that is a link or not ``euid``'s."""
        dirs = set()
        for rel in self.files:
            parent = rel.rpartition("/")[0]
            while parent and parent not in dirs:
                dirs.add(parent)
                parent = parent.rpartition("/")[0]
        try:
            tops = [(e.name, e.stat(follow_symlinks=False)) for e in os.scandir(self.path)]
            inner = [(d, os.lstat(self._tree_prefix + d)) for d in dirs]
        except OSError:
            return "unreadable"
        for name, st in tops:
            if stat.S_ISLNK(st.st_mode):
                return f"{name} is a link"
            if euid is not None and st.st_uid != euid:
                return f"{name} belongs to uid {st.st_uid}"
        for name, st in inner:
            if not stat.S_ISDIR(st.st_mode):
                return f"{name} is not a directory"
            if euid is not None and st.st_uid != euid:
                return f"{name} belongs to uid {st.st_uid}"
        return None


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _sha256_of(path: str) -> str:
    """The hex sha256 of a file's content ("" when it cannot be read), never through a link."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _settle(path: str, stored: Stat) -> Fingerprint:
    """Put a verified file's mode and mtime back as stored (the stored bytecode checks its
    source's mtime); its fingerprint after."""
    st = os.lstat(path)
    if stat.S_IMODE(st.st_mode) != stored.mode:
        os.chmod(path, stored.mode)
    if st.st_mtime_ns != stored.mtime_ns:
        os.utime(path, ns=(st.st_atime_ns, stored.mtime_ns))
    return Fingerprint.of(os.lstat(path))


def _read_fingerprints(path: Path, sha256: str) -> dict[str, Fingerprint]:
    """The entry's recorded fingerprints; none when missing or unreadable (all hashed)."""
    try:
        data = json.loads((path / FINGERPRINT).read_text(encoding="utf-8"))
        if data.get("sha256") != sha256:
            return {}
        return {rel: Fingerprint(*map(int, v)) for rel, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _fingerprint_text(sha256: str, seen: Mapping[str, Fingerprint]) -> str:
    files = {rel: [f.size, f.mtime_ns, f.mode, f.uid, f.ino, f.ctime_ns] for rel, f in seen.items()}
    return json.dumps({"sha256": sha256, "files": files})


class Compiler:
    """Compiles ``.py`` files to bytecode with the target interpreter, as pip does.

    pip byte-compiles under the interpreter it installs for (``compileall``,
    default optimisation, ``force=True``); so do we, once per stored wheel.
    """

    def __init__(self, python: Path, env: Mapping[str, str] | None = None) -> None:
        self.python = python
        self.env = dict(env) if env is not None else None

    def compile(self, files: list[str]) -> dict[str, str]:
        """Compile ``files`` (absolute paths, which the bytecode names); return source -> pyc
        for those that compiled."""
        if not files:
            return {}
        compilation = self.start()
        compilation.submit(files)
        return compilation.finish()

    def start(self) -> Compilation:
        """A compiling process that takes files while others are still being unpacked."""
        return Compilation(self)


class Compilation:
    """One compiling process of the target: batches go in as they come, results at the end.

    It uses every core (a process pool once enough files came), so compiling one
    wheel overlaps with unpacking (and downloading) the next. It runs as a
    ``process.Helper``: in a process group of its own, killed whole (pool and
    all) by ``abort``, so no worker outlives the staging it writes into.
    """

    LABEL = "byte-compiling for the store"

    def __init__(self, compiler: Compiler) -> None:
        self.python = compiler.python
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish or abort)
        self._helper = process.Helper(
            [str(compiler.python), "-c", _COMPILE_SCRIPT], compiler.env, self.LABEL, self._errors
        )
        self._lock = threading.Lock()
        self._broken = False

    def submit(self, files: list[str], names: Mapping[str, str] | None = None) -> None:
        """Queue ``files`` (absolute paths) for compiling, each named in its bytecode by
        ``names`` (its absolute path when absent); safe from several threads."""
        if not files:
            return
        named = [[path, (names or {}).get(path, path)] for path in files]
        line = json.dumps(named).encode("utf-8") + b"\n"
        with self._lock:
            if self._broken:
                return
            try:
                self._helper.send(line)
            except OSError:  # the process died: finish() says why
                self._broken = True

    def finish(self) -> dict[str, str]:
        """Wait for every queued file; return source -> pyc for those that compiled."""
        with self._lock:
            self._broken = True
            code, stdout = self._helper.finish()
        self._errors.seek(0)
        stderr = self._errors.read().decode("utf-8", "replace")
        self._errors.close()
        if code != 0:
            tail = stderr.strip().splitlines()[-1:] or ["?"]
            raise StoreError(f"byte-compiling with {self.python} failed: {tail[0]}")
        result: dict[str, str] = json.loads(stdout)
        return result

    def abort(self) -> None:
        """Stop compiling: the results will not be used; nothing of it runs afterwards."""
        with self._lock:
            self._broken = True
            self._helper.kill()
        self._errors.close()


# Runs under the target (3.8+): compile like pip's compileall.compile_file(force=True, quiet=True),
# the bytecode naming each file as given (``ddir``: what ``compile()`` gets as the file name).
# Reads one JSON list of [path, name] per line as they come, until a ``null`` line; a pool of every
# core once 64 files came (fewer are compiled here, without starting processes); prints
# source -> pyc at the end. Input that ends without ``null`` means pipfresh is gone or gave
# up: it kills its own process group (itself and the pool; ``process.Helper`` made it one).
_COMPILE_SCRIPT = r"""
import compileall, importlib.util, json, os, signal, sys, warnings
from concurrent.futures import ProcessPoolExecutor
def some(paths):
    done = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        for path, name in paths:
            ddir = os.path.dirname(name)
            ok = compileall.compile_file(path, ddir=ddir, force=True, quiet=2)
            done.append((path, importlib.util.cache_from_source(path) if ok else None))
    return done
def chunks(paths):
    sized = []
    for path, name in paths:
        try:
            sized.append((os.path.getsize(path), path, name))
        except OSError:
            sized.append((0, path, name))
    sized.sort(reverse=True)
    chunk, weight = [], 0
    for size, path, name in sized:
        chunk.append((path, name))
        weight += size + 4096
        if weight > 262144:
            yield chunk
            chunk, weight = [], 0
    if chunk:
        yield chunk
def stop():
    if hasattr(os, "killpg") and os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(1)
def main():
    workers = os.cpu_count() or 1
    pool, futures, pending, done = None, [], [], []
    for line in sys.stdin.buffer:
        paths = json.loads(line)
        if paths is None:
            break
        pending += paths
        if pool is None and workers > 1 and len(pending) >= 64:
            pool = ProcessPoolExecutor(workers)
        if pool is not None:
            futures += [pool.submit(some, chunk) for chunk in chunks(pending)]
            pending = []
    else:
        stop()
    if pending:
        done += some(pending)
    for future in futures:
        done += future.result()
    if pool is not None:
        pool.shutdown()
    sys.stdout.write(json.dumps({src: pyc for src, pyc in done if pyc}))
if __name__ == "__main__":
    main()
"""


def installed_name(archive_path: str) -> str:
    """A wheel file's path inside the directory its scheme installs it into, the same in
    every target: ``fancy/cli.py``, and ``x/y.py`` for ``<name>.data/purelib/x/y.py``."""
    parts = archive_path.split("/", 2)
    if len(parts) == 3 and parts[0].endswith(".data"):
        return parts[2]
    return archive_path


def compiles(archive_path: str) -> bool:
    """Whether pip would byte-compile this file: every installed ``.py`` but scripts.

    Scripts get the target's ``#!`` line on install, so their bytecode cannot
    be shared; they are rarely ``.py`` files anyway.
    """
    if not archive_path.endswith(".py"):
        return False
    parts = archive_path.split("/", 2)
    return not (len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts")


class Store:
    """The wheel store of one partition."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entry_dir(self, sha256: str) -> Path:
        return self.path / sha256

    def get(self, sha256: str) -> Entry | None:
        """The complete entry for ``sha256`` as recorded (not verified), or None when
        absent or unreadable."""
        path = self.entry_dir(sha256)
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if data.get("layout") != _MANIFEST_VERSION:
                return None
            files = {}
            for rel, (size, mtime_ns, mode, digest) in data["files"].items():
                files[rel] = Stat(int(size), int(mtime_ns), int(mode), str(digest))
            pyc = dict(data["pyc"])
            wheel = str(data["wheel"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Entry(path, sha256, wheel, files, pyc, seen=_read_fingerprints(path, sha256))

    def verified(self, sha256: str) -> Entry | None:
        """The entry for ``sha256`` if every file is this user's and holds what was stored.

        A file whose stat is not the fingerprint recorded (a restore, a chown, an
        edit) is hashed again; when it matches, its mode and mtime are put back and
        the entry's fingerprint is recorded anew, so it is hashed once.
        """
        entry = self.get(sha256)
        if entry is None:
            return None
        check = entry.check(_euid())
        if check.problem is not None:
            return None
        if not check.rehashed:
            return entry
        now = dict(check.now)
        try:
            for rel in check.rehashed:
                now[rel] = _settle(entry.file(rel), entry.files[rel])
        except OSError:
            return None
        self._record(entry, now)
        return replace(entry, seen=now, reverified=len(check.rehashed))

    def lookup(self, sha256: str) -> Entry | None:
        """``verified``, but an entry that is not is discarded (to be added again)."""
        entry = self.verified(sha256)
        if entry is None and os.path.lexists(self.entry_dir(sha256)):
            # Published entries are complete (atomic rename): a damaged or foreign one
            # would block adding the wheel again.
            self.discard(sha256)
        return entry

    def linked(self, entries: Iterable[Entry]) -> None:
        """Record again the fingerprints of entries just installed into a target.

        ``os.link`` changes the ctime of every file it links, which must not make
        the next install hash them again. Only a file whose stat is otherwise what
        its check saw is recorded (what an install's own links cannot tell from an
        edit during that install is its ctime: that window is the install's).
        """
        todo = [e for e in entries if e.seen]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            for _ in pool.map(self._relinked, todo):
                pass

    def _relinked(self, entry: Entry) -> None:
        now = {}
        prefix = entry.file("")
        for rel, before in entry.seen.items():
            try:
                fp = Fingerprint.of(os.lstat(prefix + rel))
            except OSError:
                continue
            if replace(fp, ctime_ns=before.ctime_ns) == before:  # linked, nothing else
                now[rel] = fp
        if now != entry.seen:
            self._record(entry, now)

    def _record(self, entry: Entry, seen: Mapping[str, Fingerprint]) -> None:
        """Write an entry's fingerprint whole, then rename it in (a failure costs a hash)."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-fp-{entry.sha256[:16]}-", dir=self.path)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(_fingerprint_text(entry.sha256, seen))
            os.replace(tmp, entry.path / FINGERPRINT)
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

    def adding(self, compiler: Compiler, unpacked: Callable[[], None] | None = None) -> Adding:
        """Add wheels one by one as they arrive (``submit``), published together (``finish``);
        ``unpacked`` is called (from any thread) as each wheel is unpacked."""
        return Adding(self, compiler, unpacked)

    def _unpack(self, sha256: str, wheel: Path, opened: BinaryIO | None, umask: int) -> _Unpacked:
        self.path.mkdir(parents=True, exist_ok=True)
        wheelcheck.check_archive(wheel if opened is None else opened, wheel.name)  # as pip would
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha256[:16]}-", dir=self.path))
        tree = tmp / "tree"
        digests: dict[str, str] = {}
        try:
            if opened is not None:
                sources = _unzip(opened, tree, umask, digests)
            else:
                with open(wheel, "rb") as fp:
                    sources = _unzip(fp, tree, umask, digests)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"cannot unpack {wheel.name} into the store: {exc}") from None
        return _Unpacked(tmp, sources, digests)

    def _publish(
        self,
        sha256: str,
        tmp: Path,
        wheel_name: str,
        sources: Mapping[str, str],
        digests: Mapping[str, str],
        compiled: Mapping[str, str],
    ) -> Entry:
        """Every file made read-only and recorded (the wheel's hashed as unpacked, the
        bytecode now), then the whole entry renamed into place."""
        tree = tmp / "tree"
        prefix = str(tree) + os.sep
        pyc = {
            rel: compiled[src][len(prefix) :].replace(os.sep, "/")
            for rel, src in sources.items()
            if src in compiled and compiled[src].startswith(prefix)
        }
        bytecode = set(pyc.values())  # compiled over whatever the wheel shipped there
        files, seen = {}, {}
        for dirpath, _dirs, names in os.walk(tree):
            for name in names:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, tree).replace(os.sep, "/")
                st = os.lstat(full)
                if st.st_mode & _WRITE:
                    os.chmod(full, stat.S_IMODE(st.st_mode) & ~_WRITE)
                    st = os.lstat(full)
                digest = digests.get(rel) if rel not in bytecode else None
                mode = stat.S_IMODE(st.st_mode)
                files[rel] = Stat(st.st_size, st.st_mtime_ns, mode, digest or _sha256_of(full))
                seen[rel] = Fingerprint.of(st)
        manifest = {
            "layout": _MANIFEST_VERSION,
            "wheel": wheel_name,
            "sha256": sha256,
            "files": {r: [s.size, s.mtime_ns, s.mode, s.sha256] for r, s in files.items()},
            "pyc": pyc,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        (tmp / FINGERPRINT).write_text(_fingerprint_text(sha256, seen), encoding="utf-8")
        final = self.entry_dir(sha256)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another run added the same wheel first (rename onto a non-empty directory fails).
            existing = self.verified(sha256)
            if existing is None:
                raise StoreError(f"cannot add {wheel_name} to the store at {final}") from None
            return existing
        return Entry(final, sha256, wheel_name, files, pyc, seen=seen)


class _Unpacked(NamedTuple):
    """A wheel unpacked under a staging directory, waiting for its bytecode."""

    tmp: Path
    sources: dict[str, str]  # archive path -> file, the files to compile
    digests: dict[str, str]  # archive path -> sha256 of the content written


class Adding:
    """Wheels being added: each is unpacked as soon as it is submitted and its sources
    go to the compiling process at once, so unpacking, compiling (every core) and
    whatever produces the next wheel overlap. Nothing is published before ``finish``;
    on an error or without ``finish`` every staged directory is removed."""

    _UNPACKERS = 4  # zip members are small: more threads only fight over the GIL

    def __init__(
        self, store: Store, compiler: Compiler, unpacked: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.compiler = compiler
        self._unpacked = unpacked
        self._umask = current_umask()  # process-wide: read once, outside the threads
        self._pool = ThreadPoolExecutor(max_workers=self._UNPACKERS)
        self._compilation: Compilation | None = None
        self._futures: dict[str, tuple[str, Future[_Unpacked]]] = {}
        self._staged: list[Path] = []

    def __enter__(self) -> Adding:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=kind is not None)  # stopped: no more
        if self._compilation is not None:
            self._compilation.abort()
            self._compilation = None
        for _name, future in self._futures.values():
            if not future.cancelled() and future.exception() is None:
                self._staged.append(future.result().tmp)
        for tmp in self._staged:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._futures

    def submit(self, sha256: str, wheel: Path, opened: BinaryIO | None = None) -> None:
        """Start unpacking ``wheel`` (already checked: read from ``opened`` when given)."""
        if sha256 in self._futures:
            if opened is not None:
                opened.close()
            return
        if self._compilation is None:
            self._compilation = self.compiler.start()
        compilation = self._compilation

        def unpack() -> _Unpacked:
            try:
                unpacked = self.store._unpack(sha256, wheel, opened, self._umask)
            finally:
                if opened is not None:
                    opened.close()
            sources = unpacked.sources
            names = {path: installed_name(rel) for rel, path in sources.items()}
            compilation.submit(list(sources.values()), names)
            if self._unpacked is not None:
                self._unpacked()
            return unpacked

        self._futures[sha256] = (wheel.name, self._pool.submit(unpack))

    def finish(self) -> dict[str, Entry]:
        """Wait for every unpack and the compiling, then publish each entry atomically."""
        staged = {}
        for sha256, (name, future) in self._futures.items():
            staged[sha256] = (name, future.result())
        compiled = self._compilation.finish() if self._compilation is not None else {}
        self._compilation = None
        entries = {}
        for sha256, (name, (tmp, sources, digests)) in staged.items():
            entries[sha256] = self.store._publish(sha256, tmp, name, sources, digests, compiled)
        return entries


def _unzip(wheel: BinaryIO, tree: Path, umask: int, digests: dict[str, str]) -> dict[str, str]:
    """Extract like pip (modes included); return archive path -> file for files to compile.

    ``digests`` gets each file's sha256 as written (the wheel's own was checked).
    """
    executable = (0o777 & ~umask) | 0o111
    sources: dict[str, str] = {}
    root = os.path.abspath(tree)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            if name.endswith("/"):
                continue
            dest = os.path.abspath(os.path.join(root, name))
            if not dest.startswith(root + os.sep):
                raise ValueError(f"{name} would be written outside the wheel's directory")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                digests[dest[len(root) + 1 :].replace(os.sep, "/")] = _copy_hashed(src, out)
            mode = info.external_attr >> 16
            if mode and stat.S_ISREG(mode) and mode & 0o111:
                os.chmod(dest, executable)
            if compiles(name):
                sources[name] = dest
    return sources


def _copy_hashed(src: IO[bytes], out: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stored(store: Store, digests: Iterable[str]) -> dict[str, Entry]:
    """The intact entries among ``digests``, verified in parallel."""
    digests = list(dict.fromkeys(digests))
    if not digests:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(digests))) as pool:
        found = pool.map(store.lookup, digests)
        return {d: e for d, e in zip(digests, found) if e is not None}
