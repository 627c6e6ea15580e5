"""What pip checks in a wheel before it installs one, checked before the store takes one.

The store installs wheels without pip, so a wheel pip would refuse must be refused
here too: the store never sees it and plain pip installs the run instead, giving
the user pip's own message and exit status. The rules are pip 26.3's
(``utils/wheel.py``: the ``.dist-info`` directory and ``Wheel-Version``;
``operations/install/wheel.py``: ``.data`` scheme keys and paths that would
leave their directory; the resolver's name and version consistency), plus what
the store cannot install exactly as pip does (``installer``'s stricter parsing,
paths that are not plain, a newer ``Wheel-Version`` pip only warns about): those
go to plain pip as well, which costs speed, never correctness.

Typical use, on a wheel file or an open one::

    check_archive(path_or_stream, "demo-1.0-py3-none-any.whl")  # raises UnsupportedWheel
"""

from __future__ import annotations

import configparser
import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from email.parser import Parser
from pathlib import Path
from typing import BinaryIO

from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pipfresh.errors import PipfreshError

SCHEME_KEYS = ("data", "headers", "platlib", "purelib", "scripts")  # pip's, sorted as it prints
_WHEEL_VERSION = (1, 0)  # what pip installs without a warning (and installer accepts)
# A console or GUI entry point both pip (distlib) and installer read the same way.
_ENTRY_POINT = re.compile(r"[A-Za-z_]\w*(\.\w+)*:\w+(\.\w+)*\s*(\[[\w\s,.=-]*\])?\s*")
_SCRIPT_NAME = re.compile(r"[^\s/\\\[\]=]+")


class UnsupportedWheel(PipfreshError):
    """A wheel the store does not install (pip rejects it, or only pip installs it as pip
    does): plain pip installs the run instead and speaks for itself."""


def check_archive(source: Path | BinaryIO, filename: str) -> None:
    """``check`` on a wheel file; an open one is read from its start and rewound."""
    try:
        if not isinstance(source, Path):
            source.seek(0)
        with zipfile.ZipFile(source) as zf:
            check(filename, zf.namelist(), zf.read)
    except (
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise UnsupportedWheel(f"{filename}: cannot read the wheel: {exc}") from None
    finally:
        if not isinstance(source, Path):
            source.seek(0)


def check(filename: str, names: Iterable[str], read: Callable[[str], bytes]) -> None:
    """Raise ``UnsupportedWheel`` unless the store may install this wheel as pip would.

    ``names`` are the archive's member names, ``read`` gives a member's bytes.
    """
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise UnsupportedWheel(f"{filename}: {exc}") from None
    names = list(names)
    info_dir = _dist_info_dir(names, name)
    files = [n for n in names if not n.endswith("/")]

    def text(member: str) -> str:
        try:
            return read(member).decode("utf-8")
        except KeyError:
            raise UnsupportedWheel(f"{name} has an invalid wheel, no {member!r} file") from None
        except UnicodeDecodeError as exc:
            raise UnsupportedWheel(
                f"{name} has an invalid wheel, cannot decode {member!r}: {exc}"
            ) from None

    _check_wheel_file(text(f"{info_dir}/WHEEL"), name)
    _check_metadata(text(f"{info_dir}/METADATA"), name, version)
    data_dir = info_dir[: -len(".dist-info")] + ".data"
    for path in files:
        _check_path(path, data_dir, filename)
    _check_record(text(f"{info_dir}/RECORD"), filename)
    if f"{info_dir}/entry_points.txt" in files:
        _check_entry_points(text(f"{info_dir}/entry_points.txt"), filename)


def _dist_info_dir(names: list[str], name: str) -> str:
    """pip's ``wheel_dist_info_dir``: exactly one, starting with the project's name."""
    info_dirs = sorted({t for t in (p.split("/", 1)[0] for p in names) if t.endswith(".dist-info")})
    if not info_dirs:
        raise UnsupportedWheel(f"{name} has an invalid wheel, .dist-info directory not found")
    if len(info_dirs) > 1:
        found = ", ".join(info_dirs)
        raise UnsupportedWheel(
            f"{name} has an invalid wheel, multiple .dist-info directories found: {found}"
        )
    info_dir = info_dirs[0]
    if not canonicalize_name(info_dir).startswith(name):
        raise UnsupportedWheel(
            f"{name} has an invalid wheel, .dist-info directory {info_dir!r} "
            f"does not start with {name!r}"
        )
    return info_dir


def _check_wheel_file(text: str, name: str) -> None:
    """pip's ``wheel_version`` and ``check_compatibility``; installer's ``Root-Is-Purelib``."""
    wheel = Parser().parsestr(text)
    raw = wheel["Wheel-Version"]
    if raw is None:
        raise UnsupportedWheel(f"{name} has an invalid wheel, WHEEL is missing Wheel-Version")
    try:
        version = tuple(map(int, raw.strip().split(".")))
    except ValueError:
        raise UnsupportedWheel(
            f"{name} has an invalid wheel, invalid Wheel-Version: {raw.strip()!r}"
        ) from None
    shown = ".".join(map(str, version))
    if version[0] > _WHEEL_VERSION[0]:
        raise UnsupportedWheel(
            f"{name}'s Wheel-Version ({shown}) is not compatible with this version of pip"
        )
    if version != _WHEEL_VERSION:
        raise UnsupportedWheel(f"{name}'s Wheel-Version ({shown}): pip installs it with a warning")
    if wheel["Root-Is-Purelib"] not in ("true", "false"):
        raise UnsupportedWheel(f"{name}: Root-Is-Purelib is {wheel['Root-Is-Purelib']!r}")


def _check_metadata(text: str, name: str, version: Version) -> None:
    """The resolver's consistency check: METADATA names the file's project and version."""
    metadata = Parser().parsestr(text, headersonly=True)
    found = canonicalize_name(metadata["Name"] or "")
    if found != name:
        raise UnsupportedWheel(
            f"Requested {name} has inconsistent name: expected {name!r}, but metadata has {found!r}"
        )
    try:
        same = Version(metadata["Version"] or "") == version
    except InvalidVersion:
        same = False
    if not same:
        raise UnsupportedWheel(
            f"Requested {name} has inconsistent version: expected {str(version)!r}, but "
            f"metadata has {metadata['Version']!r}"
        )


def _check_path(path: str, data_dir: str, filename: str) -> None:
    """pip's scheme rules for one member, then the store's: a plain path.

    A file the wheel ships in ``__pycache__`` is installed as pip installs it (a
    build's leftover: numpy 2.2's cp310 wheel has one); where the store compiles the
    same ``.pyc``, its own replaces it, as pip's compile step does (``adding.publish``).
    """
    normed = posixpath.normpath(path)
    top = path.split("/", 1)[0]
    if top.endswith(".data"):
        parts = normed.split("/", 2)
        if len(parts) < 3:
            raise UnsupportedWheel(
                f"Unexpected file in {filename}: {path!r}. .data directory contents should be "
                "named like: '<scheme key>/<path>'."
            )
        if parts[1] not in SCHEME_KEYS:
            raise UnsupportedWheel(
                f"Unknown scheme key used in {filename}: {parts[1]} (for file {path!r}). "
                ".data directory contents should be in subdirectories named with a valid "
                f"scheme key ({', '.join(SCHEME_KEYS)})"
            )
        if top != data_dir:
            raise UnsupportedWheel(f"{filename}: {top} is not its .dist-info's .data directory")
    elif normed == ".." or normed.startswith(("../", "/")):
        raise UnsupportedWheel(
            f"The wheel {filename!r} has a file {path!r} trying to install outside the "
            "target directory"
        )
    parts = path.split("/")
    if path.startswith("/") or {"", ".", ".."} & set(parts):
        raise UnsupportedWheel(f"{filename}: {path!r} is not a plain path")


def _check_record(text: str, filename: str) -> None:
    """Rows ``installer`` reads without failing, with plain paths."""
    try:
        for row in parse_record_file(text.splitlines()):
            RecordEntry.from_elements(*row)
            parts = row[0].split("/")
            if row[0].startswith("/") or {"", ".", ".."} & set(parts):
                raise UnsupportedWheel(f"{filename}: RECORD lists {row[0]!r}")
    except InvalidRecordEntry as exc:
        raise UnsupportedWheel(f"{filename}: RECORD: {', '.join(exc.issues)}") from None


def _check_entry_points(text: str, filename: str) -> None:
    """Console and GUI scripts pip writes (a callable, a name inside the scripts directory)
    and ``installer`` parses the same way."""
    config = configparser.ConfigParser(delimiters="=")
    config.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        config.read_string(text)
        for section in ("console_scripts", "gui_scripts"):
            if not config.has_section(section):
                continue
            for script, value in config.items(section):
                if script in (".", "..") or not _SCRIPT_NAME.fullmatch(script):
                    raise UnsupportedWheel(f"{filename}: entry point name {script!r}")
                if not _ENTRY_POINT.fullmatch(value):
                    raise UnsupportedWheel(f"{filename}: entry point {script} = {value}")
    except configparser.Error as exc:
        raise UnsupportedWheel(f"{filename}: entry_points.txt: {exc}") from None


__all__ = ["SCHEME_KEYS", "UnsupportedWheel", "check", "check_archive"]
