"""Adding wheels to the store: unpacked as they arrive, compiled, published atomically.

An entry is built under the store's ``.tmp-*`` staging and renamed into place complete,
so a half-added wheel is never seen; every file is made read-only and recorded (the
wheel's hashed as unpacked, the bytecode as compiled).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple

from pipfresh.errors import StoreError
from pipfresh.layout import FINGERPRINT, MANIFEST
from pipfresh.store import wheelcheck
from pipfresh.store.compile import Compilation, Compiler, compiles, installed_name
from pipfresh.store.entries import MANIFEST_VERSION, Entry, Store, current_umask
from pipfresh.store.sharing import SiblingFiles
from pipfresh.store.verify import Fingerprint, Stat, euid, fingerprint_text, sha256_of

_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class _Unpacked(NamedTuple):
    """A wheel unpacked under a staging directory, waiting for its bytecode."""

    tmp: Path
    sources: dict[str, str]  # archive path -> file, the files to compile
    digests: dict[str, str]  # archive path -> sha256 of the content written


class Adding(AbstractContextManager["Adding"]):
    """Wheels being added: each is unpacked as soon as it is submitted and its sources
    go to the compiling process at once, so unpacking, compiling (every core) and
    whatever produces the next wheel overlap. Nothing is published before ``finish``;
    on an error or without ``finish`` every staged directory is removed.

    Wheels may be submitted from any thread (the ones fetched ahead arrive while pip
    resolves); after the block ends a submission is refused, so nothing is left
    unpacking or compiling.
    """

    _UNPACKERS = 4  # zip members are small: more threads only fight over the GIL

    def __init__(
        self,
        store: Store,
        compiler: Compiler,
        unpacked: Callable[[], None] | None = None,
        siblings: SiblingFiles | None = None,
    ) -> None:
        self.store = store
        self.compiler = compiler
        self._watchers: list[Callable[[str], None]] = []
        if unpacked is not None:
            self._watchers.append(lambda _sha256: unpacked())
        self._umask = current_umask()  # process-wide: read once, outside the threads
        self._pool = ThreadPoolExecutor(max_workers=self._UNPACKERS)
        self._compilation: Compilation | None = None
        self._futures: dict[str, tuple[str, Future[_Unpacked]]] = {}
        self._staged: list[Path] = []
        self._lock = threading.Lock()
        self._unpacked: set[str] = set()
        self._closed = False
        self._siblings = siblings

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        with self._lock:
            self._closed = True
        try:
            self._pool.shutdown(wait=True, cancel_futures=kind is not None)  # stopped: no more
            compilation, self._compilation = self._compilation, None
            if compilation is not None:
                compilation.abort()
        finally:  # every unpack has ended: what it staged and nothing published is removed
            with self._lock:
                staged = list(self._staged)
            for tmp in staged:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._futures

    def watch(self, unpacked: Callable[[str], None]) -> None:
        """Call ``unpacked(sha256)`` for each wheel unpacked, those unpacked already first."""
        with self._lock:
            done = sorted(self._unpacked)
            self._watchers.append(unpacked)
        for sha256 in done:
            unpacked(sha256)

    def submit(self, sha256: str, wheel: Path, opened: BinaryIO | None = None) -> None:
        """Start unpacking ``wheel`` (already checked: read from ``opened`` when given)."""
        with self._lock:
            if sha256 in self._futures or self._closed:
                if opened is not None:
                    opened.close()
                return
            if self._compilation is None:
                self._compilation = self.compiler.start()
            compilation = self._compilation

            def unpack_one() -> _Unpacked:
                try:
                    unpacked = unpack(
                        self.store, sha256, wheel, opened, self._umask, self._siblings
                    )
                finally:
                    if opened is not None:
                        opened.close()
                with self._lock:  # removed on exit unless published, whatever fails next
                    self._staged.append(unpacked.tmp)
                sources = unpacked.sources
                names = {path: installed_name(rel) for rel, path in sources.items()}
                compilation.submit(list(sources.values()), names)
                with self._lock:
                    self._unpacked.add(sha256)
                    watchers = list(self._watchers)
                for watcher in watchers:
                    watcher(sha256)
                return unpacked

            self._futures[sha256] = (wheel.name, self._pool.submit(unpack_one))

    def finish(self, only: Collection[str] | None = None) -> dict[str, Entry]:
        """Wait for every unpack and the compiling, then publish each entry atomically;
        with ``only``, those alone (the others, fetched ahead on a guess pip did not
        take, are dropped, whatever became of them)."""
        staged = {}
        with self._lock:
            futures = dict(self._futures)
        for sha256, (name, future) in futures.items():
            if only is None or sha256 in only:
                staged[sha256] = (name, future.result())
        compiled = self._compilation.finish() if self._compilation is not None else {}
        self._compilation = None
        entries = {}
        for sha256, (name, (tmp, sources, digests)) in staged.items():
            entries[sha256] = publish(self.store, sha256, tmp, name, sources, digests, compiled)
        return entries


def unpack(
    store: Store,
    sha256: str,
    wheel: Path,
    opened: BinaryIO | None,
    umask: int,
    siblings: SiblingFiles | None = None,
) -> _Unpacked:
    """Check the archive as pip would and unzip it into a new staging directory (each
    file that another partition's store holds identically linked to it: ``sharing``)."""
    store.path.mkdir(parents=True, exist_ok=True)
    wheelcheck.check_archive(wheel if opened is None else opened, wheel.name)  # as pip would
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha256[:16]}-", dir=store.path))
    tree = tmp / "tree"
    digests: dict[str, str] = {}
    try:
        if opened is not None:
            sources = _unzip(opened, tree, umask, digests, siblings)
        else:
            with open(wheel, "rb") as fp:
                sources = _unzip(fp, tree, umask, digests, siblings)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot unpack {wheel.name} into the store: {exc}") from None
    return _Unpacked(tmp, sources, digests)


def publish(
    store: Store,
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
            files[rel] = Stat(st.st_size, st.st_mtime_ns, mode, digest or sha256_of(full))
            seen[rel] = Fingerprint.of(st)
    manifest = {
        "layout": MANIFEST_VERSION,
        "wheel": wheel_name,
        "sha256": sha256,
        "files": {r: [s.size, s.mtime_ns, s.mode, s.sha256] for r, s in files.items()},
        "pyc": pyc,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    (tmp / FINGERPRINT).write_text(fingerprint_text(sha256, seen), encoding="utf-8")
    final = store.entry_dir(sha256)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another run added the same wheel first (rename onto a non-empty directory fails).
        existing = store.verified(sha256)
        if existing is None:
            raise StoreError(f"cannot add {wheel_name} to the store at {final}") from None
        return existing
    return Entry(final, sha256, wheel_name, files, pyc, seen=seen)


def _unzip(
    wheel: BinaryIO,
    tree: Path,
    umask: int,
    digests: dict[str, str],
    siblings: SiblingFiles | None = None,
) -> dict[str, str]:
    """Extract like pip (modes included); return archive path -> file for files to compile.

    ``digests`` gets each file's sha256 as written (the wheel's own was checked).
    """
    executable = (0o777 & ~umask) | 0o111
    owner = euid()
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
                digest = _copy_hashed(src, out)
            digests[dest[len(root) + 1 :].replace(os.sep, "/")] = digest
            mode = info.external_attr >> 16
            if mode and stat.S_ISREG(mode) and mode & 0o111:
                os.chmod(dest, executable)
            if siblings is not None:
                siblings.link(dest, digest, owner)
            if compiles(name):
                sources[name] = dest
    return sources


def _copy_hashed(src: IO[bytes], out: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()
