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
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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
        proc = subprocess.run(
            [str(self.python), "-c", _COMPILE_SCRIPT],
            input="\0".join(files).encode("utf-8"),
            capture_output=True,
            env=self.env,
            check=False,
        )
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
            raise StoreError(f"byte-compiling with {self.python} failed: {tail[0]}")
        result: dict[str, str] = json.loads(proc.stdout)
        return result


# Runs under the target (3.8+): compile like pip's compileall.compile_file(force=True, quiet=True),
# several files at a time, and report which succeeded.
_COMPILE_SCRIPT = r"""
import compileall, importlib.util, json, os, sys, warnings
from concurrent.futures import ProcessPoolExecutor
def one(path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        ok = compileall.compile_file(path, force=True, quiet=2)
    return path, importlib.util.cache_from_source(path) if ok else None
def main():
    files = [f for f in sys.stdin.buffer.read().decode("utf-8").split("\0") if f]
    workers = min(len(files) // 64 + 1, os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(one, files, chunksize=32))
    else:
        done = [one(f) for f in files]
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
        self.path.mkdir(parents=True, exist_ok=True)
        staged: dict[str, tuple[Path, str, dict[str, str]]] = {}
        try:
            umask = _umask()  # process-wide: read once, outside the threads
            with ThreadPoolExecutor(max_workers=min(8, len(wheels))) as pool:
                unpacked = pool.map(lambda item: self._unpack(item, umask), wheels.items())
                for sha256, tmp, wheel_name, sources in unpacked:
                    staged[sha256] = (tmp, wheel_name, sources)
            every = [src for _tmp, _name, sources in staged.values() for src in sources.values()]
            compiled = compiler.compile(every)
            entries = {}
            for sha256, (tmp, wheel_name, sources) in staged.items():
                entries[sha256] = self._publish(sha256, tmp, wheel_name, sources, compiled)
            return entries
        finally:
            for tmp, _name, _sources in staged.values():
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def _unpack(self, item: tuple[str, Path], umask: int) -> tuple[str, Path, str, dict[str, str]]:
        sha256, wheel = item
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha256[:16]}-", dir=self.path))
        tree = tmp / "tree"
        try:
            sources = _unzip(wheel, tree, umask)
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"cannot unpack {wheel.name} into the store: {exc}") from None
        return sha256, tmp, wheel.name, sources

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


def _unzip(wheel: Path, tree: Path, umask: int) -> dict[str, str]:
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
