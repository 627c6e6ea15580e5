"""A per-ABI store of unpacked wheels, each with its bytecode, addressed by sha256.

A partition is per interpreter ABI, so it is where unpacked wheels *and* their
``.pyc`` can be kept: bytecode is compiled once per ABI, by the target
interpreter, not on every install. Installs then hardlink (or copy) from here.

Layout, inside the partition's ``pipfresh/`` directory::

    store-v1/<sha256>/tree/...        the wheel's files as in the archive, plus __pycache__
    store-v1/<sha256>/manifest.json   name, version, every file's size, mtime and mode
    store-v1/.tmp-*/                  entries being added (never read)

Adding is atomic: an entry is built under ``.tmp-*`` and renamed into place
complete, so a half-added wheel is never seen. Installed files share inodes
with the store, so a file edited in place in a target would edit the store
too: every entry is verified (size, mtime, mode of each file, one ``stat``)
before it is linked, and an entry that fails is discarded and added again.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from . import process
from .errors import PipfreshError

STORE_LAYOUT = "store-v1"
MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


class StoreError(PipfreshError):
    """A wheel could not be added to the store."""


@dataclass(frozen=True)
class Stat:
    """What must not change in a stored file: an edit through a hardlink changes it."""

    size: int
    mtime_ns: int
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stat:
        return cls(st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


@dataclass(frozen=True)
class Entry:
    """One stored wheel: its unpacked tree, the files in it and their bytecode."""

    path: Path
    sha256: str
    wheel_name: str
    files: Mapping[str, Stat]  # archive path -> stat, bytecode included
    pyc: Mapping[str, str]  # archive path of a .py -> archive path of its .pyc

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    @cached_property
    def _tree_prefix(self) -> str:
        return os.path.join(self.path, "tree") + os.sep

    def file(self, archive_path: str) -> str:
        """The stored file's path (called per installed file: string work only)."""
        return self._tree_prefix + archive_path

    def intact(self) -> bool:
        """Every file still has the size, mtime and mode it had when stored."""
        prefix = self._tree_prefix
        try:
            for rel, expected in self.files.items():
                st = os.lstat(prefix + rel)
                if (st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)) != (
                    expected.size,
                    expected.mtime_ns,
                    expected.mode,
                ):
                    return False
        except OSError:
            return False
        return True


class Compiler:
    """Compiles ``.py`` files to bytecode with the target interpreter, as pip does.

    pip byte-compiles under the interpreter it installs for (``compileall``,
    default optimisation, ``force=True``); so do we, once per stored wheel.
    """

    def __init__(self, python: Path, env: Mapping[str, str] | None = None) -> None:
        self.python = python
        self.env = dict(env) if env is not None else None

    def compile(self, files: list[str]) -> dict[str, str]:
        """Compile ``files`` (absolute paths); return source -> pyc for those that compiled."""
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

    def submit(self, files: list[str]) -> None:
        """Queue ``files`` (absolute paths) for compiling; safe from several threads."""
        if not files:
            return
        line = json.dumps(files).encode("utf-8") + b"\n"
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


# Runs under the target (3.8+): compile like pip's compileall.compile_file(force=True, quiet=True).
# Reads one JSON list of paths per line as they come, until a ``null`` line; a pool of every
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
        for path in paths:
            ok = compileall.compile_file(path, force=True, quiet=2)
            done.append((path, importlib.util.cache_from_source(path) if ok else None))
    return done
def chunks(paths):
    sized = []
    for path in paths:
        try:
            sized.append((os.path.getsize(path), path))
        except OSError:
            sized.append((0, path))
    sized.sort(reverse=True)
    chunk, weight = [], 0
    for size, path in sized:
        chunk.append(path)
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
        """The complete entry for ``sha256``, or None when absent or unreadable."""
        path = self.entry_dir(sha256)
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if data.get("layout") != _MANIFEST_VERSION:
                return None
            files = {rel: Stat(*values) for rel, values in data["files"].items()}
            return Entry(path, sha256, str(data["wheel"]), files, dict(data["pyc"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def lookup(self, sha256: str) -> Entry | None:
        """``get``, but an entry whose files changed since it was stored is discarded."""
        entry = self.get(sha256)
        if entry is None and self.entry_dir(sha256).exists():
            # Published entries are complete (atomic rename): no readable manifest means
            # damage, and the damaged directory would block adding the wheel again.
            self.discard(sha256)
        if entry is not None and not entry.intact():
            self.discard(sha256)
            return None
        return entry

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

    def adding(self, compiler: Compiler) -> Adding:
        """Add wheels one by one as they arrive (``submit``), published together (``finish``)."""
        return Adding(self, compiler)

    def _unpack(
        self, sha256: str, wheel: Path, opened: BinaryIO | None, umask: int
    ) -> tuple[Path, dict[str, str]]:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha256[:16]}-", dir=self.path))
        tree = tmp / "tree"
        try:
            if opened is not None:
                sources = _unzip(opened, tree, umask)
            else:
                with open(wheel, "rb") as fp:
                    sources = _unzip(fp, tree, umask)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"cannot unpack {wheel.name} into the store: {exc}") from None
        return tmp, sources

    def _publish(
        self,
        sha256: str,
        tmp: Path,
        wheel_name: str,
        sources: Mapping[str, str],
        compiled: Mapping[str, str],
    ) -> Entry:
        tree = tmp / "tree"
        prefix = str(tree) + os.sep
        pyc = {
            rel: compiled[src][len(prefix) :].replace(os.sep, "/")
            for rel, src in sources.items()
            if src in compiled and compiled[src].startswith(prefix)
        }
        files = {}
        for dirpath, _dirs, names in os.walk(tree):
            for name in names:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, tree).replace(os.sep, "/")
                files[rel] = Stat.of(os.lstat(full))
        manifest = {
            "layout": _MANIFEST_VERSION,
            "wheel": wheel_name,
            "sha256": sha256,
            "files": {rel: [s.size, s.mtime_ns, s.mode] for rel, s in files.items()},
            "pyc": pyc,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        final = self.entry_dir(sha256)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another run added the same wheel first (rename onto a non-empty directory fails).
            existing = self.get(sha256)
            if existing is None:
                raise StoreError(f"cannot add {wheel_name} to the store at {final}") from None
            return existing
        return Entry(final, sha256, wheel_name, files, pyc)


class Adding:
    """Wheels being added: each is unpacked as soon as it is submitted and its sources
    go to the compiling process at once, so unpacking, compiling (every core) and
    whatever produces the next wheel overlap. Nothing is published before ``finish``;
    on an error or without ``finish`` every staged directory is removed."""

    _UNPACKERS = 4  # zip members are small: more threads only fight over the GIL

    def __init__(self, store: Store, compiler: Compiler) -> None:
        self.store = store
        self.compiler = compiler
        self._umask = _umask()  # process-wide: read once, outside the threads
        self._pool = ThreadPoolExecutor(max_workers=self._UNPACKERS)
        self._compilation: Compilation | None = None
        self._futures: dict[str, tuple[str, Future[tuple[Path, dict[str, str]]]]] = {}
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
                self._staged.append(future.result()[0])
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

        def unpack() -> tuple[Path, dict[str, str]]:
            try:
                tmp, sources = self.store._unpack(sha256, wheel, opened, self._umask)
            finally:
                if opened is not None:
                    opened.close()
            compilation.submit(list(sources.values()))
            return tmp, sources

        self._futures[sha256] = (wheel.name, self._pool.submit(unpack))

    def finish(self) -> dict[str, Entry]:
        """Wait for every unpack and the compiling, then publish each entry atomically."""
        staged = {}
        for sha256, (name, future) in self._futures.items():
            staged[sha256] = (name, *future.result())
        compiled = self._compilation.finish() if self._compilation is not None else {}
        self._compilation = None
        entries = {}
        for sha256, (name, tmp, sources) in staged.items():
            entries[sha256] = self.store._publish(sha256, tmp, name, sources, compiled)
        return entries


def _unzip(wheel: BinaryIO, tree: Path, umask: int) -> dict[str, str]:
    """Extract like pip (modes included); return archive path -> file for files to compile."""
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
                shutil.copyfileobj(src, out, 1 << 20)
            mode = info.external_attr >> 16
            if mode and stat.S_ISREG(mode) and mode & 0o111:
                os.chmod(dest, executable)
            if compiles(name):
                sources[name] = dest
    return sources


def _umask() -> int:
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
