"""Installing a stored wheel into a target with ``installer``, ending where pip ends.

``installer`` drives the install (WHEEL, schemes, entry points); the source
and destination here make it link files from the store instead of unzipping,
and write what pip writes: its script launchers, ``#!python`` rewrites,
``INSTALLER``, ``REQUESTED``, ``direct_url.json`` and a ``RECORD`` built by
pip's own rules (wheel rows kept, generated files hashed, bytecode listed
without hashes, sorted, CSV with CRLF).

The ``.dist-info`` directory comes last and whole, as pip writes it last: an
install killed halfway leaves files no installer takes for a distribution, so
pip's next resolution sees it missing and it is installed again.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import errno
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

import installer
from installer.destinations import WheelDestination
from installer.exceptions import InstallerError
from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file

if TYPE_CHECKING:
    from installer.scripts import ScriptSection
from installer.sources import WheelContentElement, WheelSource
from installer.utils import Scheme as SchemeName
from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import Version

from pipfresh.cache import fs
from pipfresh.errors import PipfreshError
from pipfresh.layout import PLAN_FILE
from pipfresh.store import clone, wheelcheck
from pipfresh.store.entries import Compiler, Entry, current_umask
from pipfresh.target.interpreter import Facts

LINK_MODE_ENV = "PIPFRESH_LINK_MODE"


class InstallError(PipfreshError):
    """A stored wheel could not be installed into the target."""


# -- the target's scheme -------------------------------------------------------------


@dataclass(frozen=True)
class TargetScheme:
    """Where a virtual environment's files go, computed as pip computes it for a venv."""

    purelib: str
    platlib: str
    scripts: str
    data: str
    include: str  # headers go to include/<dist name>, pip's venv rule

    @classmethod
    def for_venv(cls, facts: Facts) -> TargetScheme:
        if not (facts.purelib and facts.platlib):
            raise InstallError("the target did not report its site-packages")
        major, minor = facts.version_info[:2]
        prefix = facts.prefix
        return cls(
            purelib=facts.purelib,
            platlib=facts.platlib,
            scripts=os.path.join(prefix, "bin"),
            data=prefix,
            include=os.path.join(prefix, "include", "site", f"python{major}.{minor}"),
        )

    def paths(self, dist_name: str) -> dict[str, str]:
        return {
            "purelib": self.purelib,
            "platlib": self.platlib,
            "scripts": self.scripts,
            "data": self.data,
            "headers": os.path.join(self.include, dist_name),
        }


# -- linking ---------------------------------------------------------------------------


class Linker:
    """Places a stored file at a target path. Subclasses choose how; this one copies."""

    name = "copy"
    note: str | None = None  # what the run should say about how its files were placed

    def __init__(self) -> None:
        self._writable = 0o222 & ~current_umask()  # process-wide: read once, outside the threads

    def place(self, src: str, dest: str) -> None:
        """Copy with the mtime kept: the stored bytecode checks the source's mtime.

        Raises FileExistsError like ``os.link``: copying onto an existing file could
        write through a hardlink into the store.
        """
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "exists", dest)
        shutil.copy2(src, dest)
        self.copy_mode(src, dest)

    def copy_mode(self, src: str, dest: str) -> None:
        """A copy is the target's own file: writable as pip writes it (stored files are not)."""
        os.chmod(dest, stat.S_IMODE(os.stat(src).st_mode) | self._writable)


class HardLinker(Linker):
    """Hardlink, and copy where linking is impossible (another filesystem, no support).

    The target's file is the store's (read-only: an edit fails instead of spreading).
    """

    name = "hardlink"
    _fallback = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)

    def place(self, src: str, dest: str) -> None:
        try:
            os.link(src, dest)
        except OSError as exc:
            if exc.errno not in self._fallback:
                raise
            Linker.place(self, src, dest)


class Cloner(Linker):
    """Clone (copy-on-write): the target's own file, writable as pip leaves it, mtime kept,
    sharing blocks with the store until written. Where the filesystem cannot clone,
    ``uncloned`` places the file instead: a copy, or (``auto``) a hardlink."""

    name = "reflink"

    def __init__(self, uncloned: Linker | None = None) -> None:
        super().__init__()
        self.uncloned = uncloned or Linker()

    def place(self, src: str, dest: str) -> None:
        try:
            clone.clone(src, dest, self._writable)
        except clone.CloneUnsupported:
            self.uncloned.place(src, dest)


MODES = ("auto", "reflink", "hardlink", "copy")
DEFAULT_MODE = "auto"


def link_mode(environ: Mapping[str, str]) -> str:
    """``PIPFRESH_LINK_MODE`` as given, checked (``fastpath.decide`` asks before pip
    uninstalls anything: a typo must not leave the target half replaced)."""
    mode = environ.get(LINK_MODE_ENV, "").strip().lower() or DEFAULT_MODE
    if mode not in MODES:
        raise PipfreshError(f"{LINK_MODE_ENV}={mode}: choose one of {', '.join(MODES)}")
    return mode


def linker_from_env(
    environ: Mapping[str, str], sample: str | None = None, targets: Iterable[str] = ()
) -> Linker:
    """``PIPFRESH_LINK_MODE=auto|reflink|hardlink|copy`` (default auto), like uv's
    ``--link-mode``. ``auto`` clones where the target's filesystem clones ``sample`` (a
    stored file), probed once per filesystem of ``targets``, and hardlinks elsewhere;
    ``reflink`` clones or copies (saying so), never sharing an inode; all copy across
    filesystems."""
    mode = link_mode(environ)
    if mode == "copy":
        return Linker()
    if mode == "hardlink":
        return HardLinker()
    dirs = _existing(targets)
    cloning = sample is not None and any(clone.clones(sample, d) for d in dirs)
    if mode == "reflink":
        if cloning:
            return Cloner(Linker())  # a target directory that cannot clone gets copies
        copier = Linker()
        where = dirs[0] if dirs else "the target"
        copier.note = f"{LINK_MODE_ENV}=reflink: {where} cannot clone the store's files: copied"
        return copier
    return Cloner(HardLinker()) if cloning else HardLinker()


def _existing(paths: Iterable[str]) -> list[str]:
    """Each path, or its nearest existing parent (a scheme directory made on install)."""
    found = []
    for path in dict.fromkeys(paths):
        while path and not os.path.isdir(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        found.append(path)
    return list(dict.fromkeys(found))


# -- pip's script launchers ---------------------------------------------------------

_TEMPLATE_26 = """\
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(%(func)s())
"""
_TEMPLATE_25 = r"""# -*- coding: utf-8 -*-
import re
import sys
if __name__ == '__main__':
    from %(module)s import %(import_name)s
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""
_TEMPLATE_23 = r"""# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""


def script_template(pip_version: Version) -> str:
    """The launcher text the given pip writes (pip's own from 26, distlib's before)."""
    if pip_version >= Version("26"):
        return _TEMPLATE_26
    if pip_version >= Version("25"):
        return _TEMPLATE_25
    return _TEMPLATE_23


def shebang(interpreter: str) -> bytes:
    """distlib's shebang: ``#!python``, or the ``/bin/sh`` trampoline for long or spaced paths."""
    exe = f'"{interpreter}"' if " " in interpreter else interpreter
    raw = exe.encode("utf-8")
    simple = b" " not in raw and len(raw) + 3 <= 127 and not _is_script(interpreter)
    if simple:
        return b"#!" + raw + b"\n"
    return b"#!/bin/sh\n'''exec' " + raw + b' "$0" "$@"\n' + b"' '''\n"


def _is_script(path: str) -> bool:
    try:
        with open(path.strip('"'), "rb") as fp:
            return fp.read(2) == b"#!"
    except OSError:
        return False


# -- installer's source and destination ----------------------------------------------


class StoredFile(io.BytesIO):
    """The "stream" handed to the destination: a stored file's path, read only if asked."""

    def __init__(self, archive_path: str, path: str) -> None:
        super().__init__()
        self.archive_path = archive_path
        self.path = path

    def read(self, size: int | None = -1) -> bytes:
        with open(self.path, "rb") as fp:
            return fp.read() if size is None or size < 0 else fp.read(size)


class StoreSource(WheelSource):
    """A wheel from the store: its files are already unpacked, bytecode aside."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        tops = {rel.split("/", 1)[0] for rel in entry.files}
        infos = [t for t in tops if t.endswith(".dist-info")]
        if len(infos) != 1:
            raise InstallError(f"{entry.wheel_name}: expected one .dist-info directory")
        self._dist_info = infos[0]
        distribution, version = self._dist_info[: -len(".dist-info")].rsplit("-", 1)
        super().__init__(distribution, version)

    @property
    def dist_info_dir(self) -> str:
        return self._dist_info

    @property
    def data_dir(self) -> str:
        return self._dist_info[: -len(".dist-info")] + ".data"

    @property
    def dist_info_filenames(self) -> list[str]:
        base = self._dist_info + "/"
        return [rel[len(base) :] for rel in self.entry.files if rel.startswith(base)]

    def read_dist_info(self, filename: str) -> str:
        path = self.entry.file(posixpath.join(self._dist_info, filename))
        return Path(path).read_text(encoding="utf-8")

    def validate_record(self) -> None:
        """Nothing to do: pip does not validate RECORD on install either."""

    def record_rows(self) -> list[tuple[str, str, str]]:
        return list(parse_record_file(self.read_dist_info("RECORD").splitlines()))

    def get_contents(self) -> Iterator[WheelContentElement]:
        rows = {row[0]: row for row in self.record_rows()}
        bytecode = set(self.entry.pyc.values())
        for rel, st in self.entry.files.items():
            if rel in bytecode:
                continue
            row = rows.get(rel, (rel, "", ""))
            stream = cast(BinaryIO, StoredFile(rel, self.entry.file(rel)))
            yield row, stream, bool(st.mode & 0o111)


class _Recorder(WheelDestination):
    """Where ``installer`` would put each file of a stored wheel, recorded, nothing written.

    Run once per entry: its answers (a ``Plan``) are replayed by every install.
    """

    def __init__(self, entry_points: set[str]) -> None:
        self.entry_points = entry_points
        self.files: list[tuple[str, str, str, bool]] = []  # scheme, path, archive path, exec
        self.scripts: list[tuple[str, str, str, str]] = []  # name, module, attr, section

    def write_file(
        self,
        scheme: SchemeName,
        path: str | os.PathLike[str],
        stream: BinaryIO,
        is_executable: bool,
    ) -> RecordEntry:
        path = os.fspath(path)
        wrapper = scheme == "scripts" and _is_entry_point_wrapper(path, self.entry_points)
        if isinstance(stream, StoredFile) and not wrapper:
            self.files.append((str(scheme), path, stream.archive_path, is_executable))
        return RecordEntry(path, None, None)

    def write_script(
        self, name: str, module: str, attr: str, section: ScriptSection
    ) -> RecordEntry:
        self.scripts.append((name, module, attr, str(section)))
        return RecordEntry(name, None, None)

    def finalize_installation(
        self,
        scheme: SchemeName,
        record_file_path: str,
        records: Iterable[tuple[SchemeName, RecordEntry]],
    ) -> None:
        self.root = str(scheme)


def _is_entry_point_wrapper(path: str, entry_points: set[str]) -> bool:
    """A setuptools wrapper for an entry point: pip skips it (it writes its own launcher)."""
    name = os.path.basename(path)
    lower = name.lower()
    for suffix in (".exe", "-script.py", ".pya"):
        if lower.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name in entry_points


def _entry_point_names(source: StoreSource) -> set[str]:
    if "entry_points.txt" not in source.dist_info_filenames:
        return set()
    config = ConfigParser(delimiters="=", interpolation=None)
    config.optionxform = str  # type: ignore[assignment,method-assign]
    config.read_string(source.read_dist_info("entry_points.txt"))
    return {
        name
        for section in ("console_scripts", "gui_scripts")
        if config.has_section(section)
        for name in config.options(section)
    }


@dataclass(frozen=True)
class Plan:
    """An entry's install, worked out once by ``installer`` and replayed by every install.

    Nothing in it depends on the target: scheme names and paths inside each
    scheme, the directories to make, the bytecode beside each module, the
    scripts whose ``#!python`` line is rewritten, the launchers to write and
    the wheel's own RECORD rows.
    """

    root: str  # purelib or platlib: RECORD paths are relative to it
    dist_info: str
    # scheme, path in the scheme, archive path, pyc archive path ("" for none), #!python fix
    files: list[tuple[str, str, str, str, bool]]
    dirs: dict[str, list[str]]  # scheme -> directories to make, parents first ("" is the base)
    scripts: list[tuple[str, str, str, str]]  # entry-point launchers: name, module, attr, kind
    record: list[tuple[str, str, str]]  # the wheel's RECORD rows

    @classmethod
    def load(cls, entry: Entry) -> Plan | None:
        try:
            data = json.loads(Path(entry.path, PLAN_FILE).read_text(encoding="utf-8"))
            if data.get("sha256") != entry.sha256:
                return None
            plan = cls(
                root=str(data["root"]),
                dist_info=str(data["dist_info"]),
                files=[(a, b, c, d, bool(e)) for a, b, c, d, e in data["files"]],
                dirs={str(k): list(v) for k, v in data["dirs"].items()},
                scripts=[(a, b, c, d) for a, b, c, d in data["scripts"]],
                record=[(a, b, c) for a, b, c in data["record"]],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Made by ``make``, which checks every path; checked again, cheaply, before trusting it.
        paths = [f[1] for f in plan.files] + [s[0] for s in plan.scripts] + [plan.dist_info]
        paths += [d for dirs in plan.dirs.values() for d in dirs if d]
        return None if any(map(_escapes, paths)) else plan

    @classmethod
    def make(cls, entry: Entry) -> Plan:
        """Check the entry as pip checks a wheel, ask ``installer`` where every file goes,
        check every path stays in its scheme. ``UnsupportedWheel``: only pip may install it."""
        _check_entry(entry)
        source = StoreSource(entry)
        recorder = _Recorder(_entry_point_names(source))
        try:
            installer.install(source, recorder, {})
        except (InstallerError, InvalidRecordEntry) as exc:
            reason = exc.args[-1] if exc.args else exc
            raise wheelcheck.UnsupportedWheel(f"{entry.wheel_name}: {reason}") from None
        files = []
        dirs: dict[str, set[str]] = {}
        for name, *_rest in recorder.scripts:
            if _escapes(name) or "/" in name:
                raise InstallError(f"{entry.wheel_name}: entry point {name!r} escapes scripts")
        for scheme, path, archive, _exec in recorder.files:
            parts = path.split("/")
            if _escapes(path):
                raise InstallError(f"{entry.wheel_name}: {path} escapes {scheme}")
            parent = "/".join(parts[:-1])
            made = dirs.setdefault(scheme, {""})
            for i in range(1, len(parts)):
                made.add("/".join(parts[:i]))
            pyc = entry.pyc.get(archive, "")
            if pyc:
                made.add(f"{parent}/__pycache__" if parent else "__pycache__")
            fix = scheme == "scripts" and _starts_with(entry.file(archive), b"#!python")
            files.append((scheme, path, archive, pyc, fix))
        ordered = {k: sorted(v, key=lambda d: (d.count("/"), d)) for k, v in dirs.items()}
        return cls(
            root=recorder.root,
            dist_info=source.dist_info_dir,
            files=files,
            dirs=ordered,
            scripts=recorder.scripts,
            record=source.record_rows(),
        )

    def save(self, entry: Entry) -> None:
        """Kept beside the entry (written whole, then renamed): the next install reads it.

        Written first as the store's ``.tmp-*`` staging, not inside the entry: what a
        killed run leaves there is removed with the store's other staging (the next
        run alone, or a prune); inside an entry, nothing would ever remove it.
        """
        data = {"sha256": entry.sha256, **dataclasses.asdict(self)}
        final = Path(entry.path, PLAN_FILE)
        tid = threading.get_ident()
        tmp = final.parent.with_name(f".tmp-plan-{entry.sha256[:16]}-{os.getpid()}-{tid}")
        try:
            fs.write_atomic(final, json.dumps(data), tmp=tmp)
        except OSError:
            pass  # a read-only store: plan again next time


def _check_entry(entry: Entry) -> None:
    """``wheelcheck`` on a stored wheel (entries stored before it existed included)."""
    bytecode = set(entry.pyc.values())
    names = [rel for rel in entry.files if rel not in bytecode]

    def read(rel: str) -> bytes:
        if rel not in entry.files:
            raise KeyError(rel)
        return Path(entry.file(rel)).read_bytes()

    wheelcheck.check(entry.wheel_name, names, read)


def plans(entries: Mapping[str, Entry]) -> dict[str, Plan]:
    """Each entry's plan (made in parallel where missing), before anything is installed:
    an entry only pip may install raises ``UnsupportedWheel`` while the target is intact."""
    keys = list(entries)
    if not keys:
        return {}
    try:
        with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
            return dict(zip(keys, pool.map(plan_for, (entries[k] for k in keys))))
    except (OSError, ValueError) as exc:
        raise InstallError(f"planning the install failed: {exc}") from None


def _escapes(path: str) -> bool:
    """Whether a path inside a scheme could reach outside it (or is not a plain path)."""
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or "." in parts or "" in parts


def plan_for(entry: Entry) -> Plan:
    """The entry's saved plan, or a new one (saved)."""
    plan = Plan.load(entry)
    if plan is None:
        plan = Plan.make(entry)
        plan.save(entry)
    return plan


def _starts_with(path: str, prefix: bytes) -> bool:
    with open(path, "rb") as fp:
        return fp.read(len(prefix)) == prefix


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
        text = self.template % {"module": module, "import_name": attr.split(".")[0], "func": attr}
        data = shebang(self.interpreter) + text.encode("utf-8")
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
        """pip's RECORD: wheel rows kept (paths moved, rewritten scripts rehashed),
        generated files hashed, bytecode without hashes; sorted, CSV. Written into the
        .dist-info being built, whose final name its paths use."""
        rows: list[tuple[str, str, str]] = []
        for path, digest, size in self.plan.record:
            new = installed.pop(path, path)
            if new in changed:
                digest, size = _rehash(Path(self.lib_dir, new).read_bytes())
            rows.append((new, digest, size))
        for dest, data in generated:
            rel = os.path.relpath(dest, self.lib_dir).replace(os.sep, "/")
            rows.append((rel, *_rehash(data)))
        rows += [(path, "", "") for path in installed.values()]
        target = self.building + os.sep + "RECORD"
        _unlink_if_present(target)
        with open(target, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(sorted(rows))


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


def _rehash(data: bytes) -> tuple[str, str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"sha256={digest}", str(len(data))


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


# -- a distribution pip was asked for that the user was not ----------------------------


def unrequest(facts: Facts, name: str, version: str) -> bool:
    """Undo what pip writes for a requirement it was given by name, as for a dependency.

    pip and setuptools are installed by a short ``pip install`` of their own, which
    marks them requested even when the user's install only needed them; pip's install
    of the whole set writes no ``REQUESTED`` for a dependency, and no RECORD row for it
    (every other row is kept byte for byte). Returns whether there was one to remove.
    """
    dist_info = _dist_info(facts, name, version)
    if dist_info is None or not os.path.lexists(os.path.join(dist_info, "REQUESTED")):
        return False
    record = os.path.join(dist_info, "RECORD")
    row = os.path.basename(dist_info) + "/REQUESTED"
    try:
        with open(record, "rb") as fp:
            lines = fp.read().splitlines(keepends=True)
        kept = [line for line in lines if _first_field(line) != row]
        mode = stat.S_IMODE(os.stat(record).st_mode)
        tmp = record + ".pipfresh-new.tmp"
        # RECORD whole, then the file it no longer lists
        fs.write_bytes_atomic(record, b"".join(kept), tmp=tmp, mode=mode)
        os.unlink(os.path.join(dist_info, "REQUESTED"))
    except OSError as exc:
        raise InstallError(f"{name} {version}: cannot drop its REQUESTED: {exc}") from None
    return True


def _first_field(line: bytes) -> str:
    return next(csv.reader([line.decode("utf-8", "replace")]), [""])[0]


def _dist_info(facts: Facts, name: str, version: str) -> str | None:
    """The ``.dist-info`` directory of ``name`` at ``version`` in the target, if any."""
    want = (canonicalize_name(name), canonicalize_version(version))
    for lib in dict.fromkeys(d for d in (facts.purelib, facts.platlib) if d):
        try:
            listing = os.listdir(lib)
        except OSError:
            continue
        for entry in listing:
            if entry.endswith(".dist-info") and "-" in entry:
                dist, _sep, found = entry[: -len(".dist-info")].rpartition("-")
                if (canonicalize_name(dist), canonicalize_version(found)) == want:
                    return os.path.join(lib, entry)
    return None


# -- a target changed in place -------------------------------------------------------


@dataclass(frozen=True)
class ChangedInPlace:
    """An installed distribution whose files no longer match the hashes in its RECORD."""

    name: str
    version: str
    target: str
    files: int  # files whose content differs from RECORD, or that are gone

    def note(self) -> str:
        differ = "file differs" if self.files == 1 else "files differ"
        return (
            f"pipfresh: note: {self.name} {self.version} in {self.target} was changed in "
            f"place ({self.files} {differ} from its RECORD)"
        )


def changed_in_place(facts: Facts, wanted: Iterable[tuple[str, str]]) -> list[ChangedInPlace]:
    """Which of ``wanted`` (name, version), installed at that very version, were changed.

    These are the distributions a run reinstalls (``--force-reinstall``, a repair):
    their files are about to be replaced, so reading them once is the whole cost.
    Only files inside the target are read; a file RECORD lists without a hash
    (bytecode, RECORD itself) is not compared.
    """
    versions = {str(canonicalize_name(n)): canonicalize_version(v) for n, v in wanted}
    found = []
    for lib in dict.fromkeys(d for d in (facts.purelib, facts.platlib) if d):
        try:
            listing = sorted(os.listdir(lib))
        except OSError:
            continue
        for name in listing:
            if not name.endswith(".dist-info") or "-" not in name:
                continue
            dist, _sep, version = name[: -len(".dist-info")].rpartition("-")
            if versions.get(str(canonicalize_name(dist))) != canonicalize_version(version):
                continue
            differ = _differing_files(lib, name, facts.prefix)
            if differ:
                found.append(ChangedInPlace(dist, version, facts.prefix, differ))
    return found


def _differing_files(lib: str, dist_info: str, prefix: str) -> int:
    try:
        with open(os.path.join(lib, dist_info, "RECORD"), encoding="utf-8", newline="") as fp:
            rows = list(csv.reader(fp))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    inside = os.path.abspath(prefix) + os.sep
    differ = 0
    for row in rows:
        if len(row) < 2 or "=" not in row[1]:
            continue
        algorithm, _sep, expected = row[1].partition("=")
        path = os.path.normpath(os.path.join(lib, row[0]))
        if algorithm not in hashlib.algorithms_available or not path.startswith(inside):
            continue
        try:
            digest = hashlib.new(algorithm)
            with open(path, "rb") as fp:
                for block in iter(lambda: fp.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            differ += 1  # gone, or no longer a file
            continue
        if base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=") != expected:
            differ += 1
    return differ


__all__ = [
    "DEFAULT_MODE",
    "LINK_MODE_ENV",
    "MODES",
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
