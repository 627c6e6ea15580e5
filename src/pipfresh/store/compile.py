"""Byte-compiling for the store: once per stored wheel, by the target interpreter, as pip does.

The compiling runs in a ``process.Helper`` of the target (its source is below): batches go
in while other wheels are still being unpacked, and a pool of every core takes them once
enough came.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from pipfresh.errors import StoreError
from pipfresh.pip import process


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
