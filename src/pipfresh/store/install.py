"""Installing a stored wheel into a target with ``installer``, ending where pip ends.

``installer`` drives the install (WHEEL, schemes, entry points) once per stored
wheel: ``source.StoreSource`` (a ``WheelSource``) hands it the unpacked files and
``destination.Recorder`` (a ``WheelDestination``) records where each goes, kept as
the entry's ``plan.Plan``. This module replays a plan into a target: files placed by
a ``linking.Linker``, pip's launchers (``scripts``), ``#!python`` rewrites,
``INSTALLER``, ``REQUESTED``, ``direct_url.json`` and pip's ``RECORD`` (``record``).

The ``.dist-info`` directory comes last and whole, as pip writes it last: an
install killed halfway leaves files no installer takes for a distribution, so
pip's next resolution sees it missing and it is installed again.

The names callers use (link modes, schemes, plans, ``unrequest``...) are importable
from here.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipfresh.errors import InstallError
from pipfresh.layout import PLAN_FILE
from pipfresh.store import record
from pipfresh.store.compile import Compiler
from pipfresh.store.entries import Entry
from pipfresh.store.installed import ChangedInPlace, changed_in_place, unrequest
from pipfresh.store.linking import (
    DEFAULT_MODE,
    LINK_MODE_ENV,
    MODES,
    Cloner,
    HardLinker,
    Linker,
    link_mode,
    linker_from_env,
)
from pipfresh.store.plan import Plan, plan_for, plans
from pipfresh.store.schemes import TargetScheme
from pipfresh.store.scripts import launcher, script_template, shebang
from pipfresh.store.source import StoreSource

_META = "<dist-info>"  # the .dist-info being built, as a scheme of its own (see _Replay)

# A plan's file: scheme, path in the scheme, archive path, pyc archive path, #!python fix.
_File = tuple[str, str, str, str, bool]


class _Replay:
    """One install of a plan into a target: files, launchers, then the ``.dist-info``.

    The ``.dist-info`` is what makes pip (and ``importlib.metadata``) take a
    distribution as installed, so it comes last and whole: built under a name
    neither reads (``.<name>-<version>.dist-info.pipfresh-new.tmp``, beside it),
    ``RECORD`` last, then renamed into place. A kill at any point leaves either
    the complete distribution or files no installer counts; the next run finds it
    missing, links it again over the leftovers and clears the half-built directory.
    """

    def __init__(
        self,
        request: Request,
        plan: Plan,
        scheme: TargetScheme,
        interpreter: str,
        template: str,
        linker: Linker,
    ) -> None:
        self.entry = request.entry
        self.plan = plan
        self.interpreter = interpreter
        self.template = template
        self.linker = linker
        paths = scheme.paths(request.name)
        self.lib_dir = os.path.abspath(paths[plan.root])
        self.bases = {name: os.path.abspath(path) for name, path in paths.items()}
        self.record_prefix = {}
        for name, base in self.bases.items():
            rel = os.path.relpath(base, self.lib_dir).replace(os.sep, "/")
            self.record_prefix[name] = "" if rel == "." else rel + "/"
        self.dist_info = self.lib_dir + os.sep + plan.dist_info
        self.building = self.lib_dir + os.sep + f".{plan.dist_info}.pipfresh-new.tmp"
        self.replaced = self.lib_dir + os.sep + f".{plan.dist_info}.pipfresh-old.tmp"
        self.bases[_META] = self.building
        self.record_prefix[_META] = plan.dist_info + "/"

    def run(self, extra: Mapping[str, bytes]) -> None:
        files, meta_files, dirs, meta_dirs = self._split()
        self._make_dirs(dirs)
        installed, changed, compile_here = self._link(files)
        generated = [self._write_script(*script) for script in self.plan.scripts]
        if compile_here:
            compiled = Compiler(Path(self.interpreter)).compile(compile_here)
            for pyc in compiled.values():
                installed[pyc] = os.path.relpath(pyc, self.lib_dir).replace(os.sep, "/")
        # The .dist-info, whole, under a name no installer reads; then renamed into place.
        _remove(self.building)  # an earlier run's, killed while building it
        _remove(self.replaced)
        self._make_dirs({_META: meta_dirs})
        more, _changed, _compile = self._link(meta_files)
        installed.update(more)
        for name, data in extra.items():
            _unlink_if_present(self.building + os.sep + name)  # a wheel's own: a store link
            with open(self.building + os.sep + name, "wb") as out:
                out.write(data)
            generated.append((self.dist_info + os.sep + name, data))
        self._write_record(installed, changed, generated)
        if os.path.lexists(self.dist_info):  # one pip did not uninstall: replaced whole
            os.rename(self.dist_info, self.replaced)
        os.rename(self.building, self.dist_info)
        _remove(self.replaced)

    def _split(self) -> tuple[list[_File], list[_File], dict[str, list[str]], list[str]]:
        """The plan's files and directories: the .dist-info's (moved to ``_META``, paths
        relative to it) apart from the rest."""
        root, top = self.plan.root, self.plan.dist_info
        prefix = top + "/"
        files: list[_File] = []
        meta_files: list[_File] = []
        for file in self.plan.files:
            if file[0] == root and file[1].startswith(prefix):
                meta_files.append((_META, file[1][len(prefix) :], *file[2:]))
            else:
                files.append(file)
        dirs = dict(self.plan.dirs)
        meta_dirs = [""]
        if root in dirs:
            dirs[root] = [d for d in dirs[root] if d != top and not d.startswith(prefix)]
            meta_dirs += [d[len(prefix) :] for d in self.plan.dirs[root] if d.startswith(prefix)]
        return files, meta_files, dirs, meta_dirs

    def _make_dirs(self, dirs: Mapping[str, list[str]]) -> None:
        """Every directory, parents first; a level with many is spread over threads
        (directories are the slowest thing to make: Django's locales have thousands)."""
        levels: dict[int, list[str]] = {}
        for scheme, rels in dirs.items():
            base = self.bases[scheme]
            os.makedirs(base, exist_ok=True)
            for rel in rels:
                if rel:
                    levels.setdefault(rel.count("/"), []).append(base + os.sep + rel)
        for _depth, paths in sorted(levels.items()):
            _spread(_mkdirs, paths)

    def _link(self, files: list[_File]) -> tuple[dict[str, str], set[str], list[str]]:
        """Every file placed (a big wheel's files spread over threads)."""
        installed: dict[str, str] = {}
        changed: set[str] = set()
        compile_here: list[str] = []
        for done in _spread(self._link_some, files):
            installed.update(done[0])
            changed.update(done[1])
            compile_here += done[2]
        return installed, changed, compile_here

    def _link_some(self, files: list[_File]) -> tuple[dict[str, str], set[str], list[str]]:
        """One link per file (an existing file is unlinked first, as pip does, never
        written through); its bytecode linked beside it."""
        tree = self.entry.file("")
        place = self.linker.place
        bases, prefixes = self.bases, self.record_prefix
        installed: dict[str, str] = {}  # archive path (or pyc dest) -> RECORD path
        changed: set[str] = set()
        compile_here: list[str] = []
        for scheme, path, archive, pyc, fix in files:
            dest = bases[scheme] + os.sep + path
            record = prefixes[scheme] + path
            if fix:
                self._fix_script(tree + archive, dest)
                changed.add(record)
            else:
                try:
                    place(tree + archive, dest)
                except FileExistsError:
                    os.unlink(dest)
                    place(tree + archive, dest)
            if scheme == "scripts" and path.endswith(".py"):
                compile_here.append(dest)  # pip compiles these too, after the #! fix
            installed[archive] = record
            if pyc:
                name = pyc.rpartition("/")[2]
                parent, _sep, _file = dest.rpartition(os.sep)
                pyc_dest = parent + os.sep + "__pycache__" + os.sep + name
                try:
                    place(tree + pyc, pyc_dest)
                except FileExistsError:
                    os.unlink(pyc_dest)
                    place(tree + pyc, pyc_dest)
                record_dir = record.rpartition("/")[0]
                installed[pyc_dest] = (
                    f"{record_dir}/__pycache__/{name}" if record_dir else f"__pycache__/{name}"
                )
        return installed, changed, compile_here

    def _fix_script(self, src: str, dest: str) -> None:
        """pip's ``fix_script``: ``#!python`` becomes the target's interpreter, in a copy."""
        with open(src, "rb") as fp:
            fp.readline()
            rest = fp.read()
        _unlink_if_present(dest)
        with open(dest, "wb") as out:
            out.write(b"#!" + self.interpreter.encode() + os.linesep.encode("ascii"))
            out.write(rest)
        self.linker.copy_mode(src, dest)

    def _write_script(self, name: str, module: str, attr: str, _kind: str) -> tuple[str, bytes]:
        data = launcher(self.template, self.interpreter, module, attr)
        dest = self.bases["scripts"] + os.sep + name
        _unlink_if_present(dest)
        with open(dest, "wb") as out:
            out.write(data)
        os.chmod(dest, (os.stat(dest).st_mode | 0o555) & 0o7777)
        return dest, data

    def _write_record(
        self,
        installed: dict[str, str],
        changed: set[str],
        generated: list[tuple[str, bytes]],
    ) -> None:
        """pip's RECORD (``record.build``), written into the .dist-info being built,
        whose final name its paths use."""
        lib = self.lib_dir
        made = [(os.path.relpath(dest, lib).replace(os.sep, "/"), data) for dest, data in generated]
        rows = record.build(
            self.plan.record, installed, changed, made, lambda rel: Path(lib, rel).read_bytes()
        )
        record.write(self.building + os.sep + "RECORD", rows)


_CHUNK = 128  # links or directories per task when one wheel's work is spread over threads
_THREADS = 8  # the work is syscalls (the GIL is released): more threads than cores pay
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

_T = TypeVar("_T")
_R = TypeVar("_R")


def _spread(work: Callable[[list[_T]], _R], items: list[_T]) -> list[_R]:
    """``work`` over ``items`` in chunks: here when few, else on a shared pool of threads
    (its own, so an install running on another pool never waits for itself)."""
    if len(items) <= 2 * _CHUNK:
        return [work(items)]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="pipfresh-link")
        pool = _pool
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    return list(pool.map(work, chunks))


def _mkdirs(paths: list[str]) -> None:
    for path in paths:
        try:
            os.mkdir(path)
        except FileExistsError:
            pass


def _remove(path: str) -> None:
    """Remove a file, a symlink or a whole directory, if present."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        _unlink_if_present(path)


def _unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- one wheel -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What to install from the store, and how pip would have marked it."""

    entry: Entry
    name: str  # the distribution name from its metadata (headers go under it)
    requested: bool
    direct_url: str | None  # pip's direct_url.json text, for direct references
    plan: Plan | None = None  # from ``plans``; else loaded or made by ``install``


def install(
    request: Request, scheme: TargetScheme, interpreter: str, template: str, linker: Linker
) -> None:
    """Install one stored wheel into the target: its plan replayed (made once, by ``installer``)."""
    extra = {"INSTALLER": b"pip\n"}
    if request.direct_url is not None:
        extra["direct_url.json"] = request.direct_url.encode("utf-8")
    if request.requested:
        extra["REQUESTED"] = b""
    try:
        plan = request.plan or plan_for(request.entry)
        _Replay(request, plan, scheme, interpreter, template, linker).run(extra)
    except (OSError, ValueError) as exc:
        raise InstallError(f"installing {request.entry.wheel_name} failed: {exc}") from None


__all__ = [
    "DEFAULT_MODE",
    "LINK_MODE_ENV",
    "MODES",
    "PLAN_FILE",
    "ChangedInPlace",
    "Cloner",
    "HardLinker",
    "InstallError",
    "Linker",
    "Plan",
    "Request",
    "StoreSource",
    "TargetScheme",
    "changed_in_place",
    "install",
    "link_mode",
    "linker_from_env",
    "plan_for",
    "plans",
    "script_template",
    "shebang",
    "unrequest",
]
