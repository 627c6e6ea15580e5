"""The distribution files in the index's root: their names and what is read from them.

A page lists hashes, sizes, upload times, ``Requires-Python`` and PEP 658
metadata, all read here from the file itself (a wheel's ``METADATA``, an
sdist's ``PKG-INFO``), so publishing a file is all a test has to do.
"""

from __future__ import annotations

import datetime
import email.parser
import hashlib
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

__all__ = ["DistFile", "parse_dist_filename", "read_dist"]

_SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True)
class DistFile:
    """What the index knows about one distribution file in its root."""

    filename: str
    project: str
    version: Version
    size: int
    sha256: str
    upload_time: str
    requires_python: str | None
    metadata: bytes | None
    """The wheel's ``METADATA`` (served as ``<file>.metadata``); ``None`` for sdists."""

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


def parse_dist_filename(filename: str) -> tuple[str, Version] | None:
    """Canonical project name and version of a wheel or sdist filename, else ``None``."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return str(name), version
        if filename.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return str(name), version
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def _wheel_metadata(path: Path, project: str) -> bytes | None:
    with zipfile.ZipFile(path) as zf:
        candidates = [
            n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]
        candidates.sort(key=lambda n: canonicalize_name(n.split("-")[0]) != project)
        return zf.read(candidates[0]) if candidates else None


def _sdist_pkg_info(path: Path) -> bytes | None:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                if n.count("/") == 1 and n.endswith("/PKG-INFO"):
                    return zf.read(n)
        return None
    with tarfile.open(path, "r:gz") as tf:
        for member in tf:
            top_level = member.name.count("/") == 1
            if member.isfile() and top_level and member.name.endswith("/PKG-INFO"):
                fh = tf.extractfile(member)
                return fh.read() if fh is not None else None
    return None


def _requires_python(metadata: bytes | None) -> str | None:
    if metadata is None:
        return None
    value = email.parser.BytesHeaderParser().parsebytes(metadata).get("Requires-Python")
    if value is None:
        return None
    return str(value).strip() or None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _iso(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_dist(
    path: Path, project: str, version: Version, size: int, mtime: float
) -> DistFile | None:
    """What the index serves about the file at ``path``; ``None`` if it cannot be read."""
    try:
        if path.name.endswith(".whl"):
            metadata = _wheel_metadata(path, project)
            requires_python = _requires_python(metadata)
        else:
            metadata = None
            requires_python = _requires_python(_sdist_pkg_info(path))
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError):
        return None
    return DistFile(
        filename=path.name,
        project=project,
        version=version,
        size=size,
        sha256=_sha256_file(path),
        upload_time=_iso(mtime),
        requires_python=requires_python,
        metadata=metadata,
    )
