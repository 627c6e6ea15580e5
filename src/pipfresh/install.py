"""Installing a stored wheel into a target with ``installer``, ending where pip ends.

``installer`` drives the install (WHEEL, schemes, entry points); the source
and destination here make it link files from the store instead of unzipping,
and write what pip writes: its script launchers, ``#!python`` rewrites,
``INSTALLER``, ``REQUESTED``, ``direct_url.json`` and a ``RECORD`` built by
pip's own rules (wheel rows kept, generated files hashed, bytecode listed
without hashes, sorted, CSV with CRLF).
"""

from __future__ import annotations

import base64
import csv
import errno
import hashlib
import io
import os
import posixpath
import shutil
from collections.abc import Iterable, Iterator, Mapping
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import installer
from installer.destinations import WheelDestination
from installer.records import RecordEntry, parse_record_file

if TYPE_CHECKING:
    from installer.scripts import ScriptSection
from installer.sources import WheelContentElement, WheelSource
from installer.utils import Scheme as SchemeName
from packaging.version import Version

from .errors import PipfreshError
from .interpreter import Facts
from .store import Compiler, Entry

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
    """Places a stored file at a target path. Subclasses choose how."""

    name = "copy"

    def place(self, src: str, dest: str) -> None:
        """Copy with the mtime kept: the stored bytecode checks the source's mtime.

        Raises FileExistsError like ``os.link``: copying onto an existing file could
        write through a hardlink into the store.
        """
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "exists", dest)
        shutil.copy2(src, dest)


class HardLinker(Linker):
    """Hardlink, and copy where linking is impossible (another filesystem, no support)."""

    name = "hardlink"
    _fallback = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)

    def place(self, src: str, dest: str) -> None:
        try:
            os.link(src, dest)
        except OSError as exc:
            if exc.errno not in self._fallback:
                raise
            Linker.place(self, src, dest)


LINKERS: dict[str, type[Linker]] = {"hardlink": HardLinker, "copy": Linker}


def linker_from_env(environ: Mapping[str, str]) -> Linker:
    """``PIPFRESH_LINK_MODE=hardlink|copy`` (default hardlink), like uv's ``--link-mode``."""
    mode = environ.get(LINK_MODE_ENV, "").strip().lower() or "hardlink"
    if mode not in LINKERS:
        raise PipfreshError(f"{LINK_MODE_ENV}={mode}: choose one of {', '.join(sorted(LINKERS))}")
    return LINKERS[mode]()


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


@dataclass
class StoreDestination(WheelDestination):
    """Links a stored wheel into the target's scheme and writes RECORD as pip does."""

    source: StoreSource
    scheme: dict[str, str]
    interpreter: str
    template: str
    linker: Linker
    installed: dict[str, str] = field(default_factory=dict)  # archive path -> RECORD path
    changed: set[str] = field(default_factory=set)
    generated: list[str] = field(default_factory=list)
    _made: set[str] = field(default_factory=set)
    _bases: dict[str, tuple[str, str]] = field(default_factory=dict)
    _compile_here: list[str] = field(default_factory=list)
    _lib_dir: str = ""

    def __post_init__(self) -> None:
        wheel = self.source.read_dist_info("WHEEL")
        purelib = any(
            line.split(":", 1)[1].strip().lower() == "true"
            for line in wheel.splitlines()
            if line.split(":", 1)[0].strip().lower() == "root-is-purelib" and ":" in line
        )
        self._lib_dir = os.path.abspath(self.scheme["purelib" if purelib else "platlib"])
        self._entry_points = self._entry_point_names()

    def _entry_point_names(self) -> set[str]:
        if "entry_points.txt" not in self.source.dist_info_filenames:
            return set()
        config = ConfigParser(delimiters="=", interpolation=None)
        config.optionxform = str  # type: ignore[assignment,method-assign]
        config.read_string(self.source.read_dist_info("entry_points.txt"))
        return {
            name
            for section in ("console_scripts", "gui_scripts")
            if config.has_section(section)
            for name in config.options(section)
        }

    def _base(self, scheme: str) -> tuple[str, str]:
        """The scheme's directory, and the prefix of its paths in RECORD (pip: relpath)."""
        found = self._bases.get(scheme)
        if found is None:
            base = os.path.abspath(self.scheme[scheme])
            rel = os.path.relpath(base, self._lib_dir).replace(os.sep, "/")
            found = self._bases[scheme] = (base, "" if rel == "." else rel + "/")
        return found

    def _target(self, scheme: SchemeName, path: str) -> tuple[str, str]:
        """Where ``path`` goes and its RECORD path; parents made, never outside the scheme.

        Called once per file: plain string work, the checked slow path only for odd paths.
        """
        base, prefix = self._base(scheme)
        parts = path.split("/")
        if path.startswith("/") or ".." in parts or "." in parts or "" in parts[:-1]:
            dest = os.path.abspath(os.path.join(base, path))
            if not dest.startswith(base + os.sep):
                raise InstallError(f"{self.source.entry.wheel_name}: {path} escapes {scheme}")
            record = os.path.relpath(dest, self._lib_dir).replace(os.sep, "/")
        else:
            dest = base + os.sep + path if os.sep == "/" else os.path.join(base, *parts)
            record = prefix + path
        parent = os.path.dirname(dest)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        return dest, record

    def _place(self, src: str, dest: str) -> None:
        """Link or copy; an existing file is unlinked first, as pip does (never written through)."""
        try:
            self.linker.place(src, dest)
        except FileExistsError:
            os.unlink(dest)
            self.linker.place(src, dest)

    def write_file(
        self,
        scheme: SchemeName,
        path: str | os.PathLike[str],
        stream: BinaryIO,
        is_executable: bool,
    ) -> RecordEntry:
        path = os.fspath(path)
        if not isinstance(stream, StoredFile):  # INSTALLER, REQUESTED, direct_url.json
            dest, _record = self._target(scheme, path)
            _unlink_if_present(dest)
            with open(dest, "wb") as out:
                out.write(stream.read())
            self.generated.append(dest)
            return RecordEntry(path, None, None)
        if scheme == "scripts" and self._is_entry_point_wrapper(path):
            return RecordEntry(path, None, None)  # pip skips setuptools' wrappers too
        dest, record = self._target(scheme, path)
        changed = scheme == "scripts" and self._write_script_file(stream.path, dest)
        if not changed:
            self._place(stream.path, dest)
        if scheme == "scripts" and path.endswith(".py"):
            self._compile_here.append(dest)  # pip compiles these too, after the #! fix
        self.installed[stream.archive_path] = record
        if changed:
            self.changed.add(record)
        pyc = self.source.entry.pyc.get(stream.archive_path)
        if pyc is not None:
            parent, _sep, _name = dest.rpartition(os.sep)
            cache_dir = parent + os.sep + "__pycache__"
            if cache_dir not in self._made:
                os.makedirs(cache_dir, exist_ok=True)
                self._made.add(cache_dir)
            pyc_name = pyc.rpartition("/")[2]
            self._place(self.source.entry.file(pyc), cache_dir + os.sep + pyc_name)
            record_dir = record.rpartition("/")[0]
            pyc_record = (
                f"{record_dir}/__pycache__/{pyc_name}" if record_dir else f"__pycache__/{pyc_name}"
            )
            self.installed[cache_dir + os.sep + pyc_name] = pyc_record
        return RecordEntry(path, None, None)

    def _is_entry_point_wrapper(self, path: str) -> bool:
        name = os.path.basename(path)
        lower = name.lower()
        for suffix in (".exe", "-script.py", ".pya"):
            if lower.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return name in self._entry_points

    def _write_script_file(self, src: str, dest: str) -> bool:
        """pip's ``fix_script``: ``#!python`` becomes the target's interpreter, in a copy."""
        with open(src, "rb") as fp:
            first = fp.readline()
            if not first.startswith(b"#!python"):
                return False
            rest = fp.read()
        _unlink_if_present(dest)
        with open(dest, "wb") as out:
            out.write(b"#!" + self.interpreter.encode() + os.linesep.encode("ascii"))
            out.write(rest)
        shutil.copymode(src, dest)
        return True

    def write_script(
        self, name: str, module: str, attr: str, section: ScriptSection
    ) -> RecordEntry:
        text = self.template % {
            "module": module,
            "import_name": attr.split(".")[0],
            "func": attr,
        }
        dest, _record = self._target(SchemeName("scripts"), name)
        _unlink_if_present(dest)
        with open(dest, "wb") as out:
            out.write(shebang(self.interpreter) + text.encode("utf-8"))
        os.chmod(dest, (os.stat(dest).st_mode | 0o555) & 0o7777)
        self.generated.append(dest)
        return RecordEntry(name, None, None)

    def finalize_installation(
        self,
        scheme: SchemeName,
        record_file_path: str,
        records: Iterable[tuple[SchemeName, RecordEntry]],
    ) -> None:
        if self._compile_here:
            compiled = Compiler(Path(self.interpreter)).compile(self._compile_here)
            for pyc in compiled.values():
                self.installed[pyc] = os.path.relpath(pyc, self._lib_dir).replace(os.sep, "/")
        installed = dict(self.installed)
        rows: list[tuple[str, str, str]] = []
        for path, digest, size in self.source.record_rows():
            new = installed.pop(path, path)
            if new in self.changed:
                digest, size = _rehash(os.path.join(self._lib_dir, new))
            rows.append((new, digest, size))
        for dest in self.generated:
            digest, size = _rehash(dest)
            rows.append((os.path.relpath(dest, self._lib_dir).replace(os.sep, "/"), digest, size))
        rows += [(path, "", "") for path in installed.values()]
        target = os.path.join(self._lib_dir, record_file_path)
        with open(target, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(sorted(rows))


def _unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rehash(path: str) -> tuple[str, str]:
    data = Path(path).read_bytes()
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


def install(
    request: Request, scheme: TargetScheme, interpreter: str, template: str, linker: Linker
) -> None:
    """Install one stored wheel into the target."""
    source = StoreSource(request.entry)
    destination = StoreDestination(
        source=source,
        scheme=scheme.paths(request.name),
        interpreter=interpreter,
        template=template,
        linker=linker,
    )
    extra = {"INSTALLER": b"pip\n"}
    if request.direct_url is not None:
        extra["direct_url.json"] = request.direct_url.encode("utf-8")
    if request.requested:
        extra["REQUESTED"] = b""
    try:
        installer.install(source, destination, extra)
    except (OSError, ValueError) as exc:
        raise InstallError(f"installing {request.entry.wheel_name} failed: {exc}") from None


__all__ = [
    "LINK_MODE_ENV",
    "HardLinker",
    "InstallError",
    "Linker",
    "Request",
    "StoreDestination",
    "StoreSource",
    "TargetScheme",
    "install",
    "linker_from_env",
    "script_template",
    "shebang",
]
