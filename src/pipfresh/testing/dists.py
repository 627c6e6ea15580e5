"""Build tiny but valid wheels and sdists for tests, with the standard library only.

Archives are byte-for-byte reproducible (fixed timestamps, sorted entries),
so the same inputs give the same sha256: cache tests can tell "same file
again" from "new file with the same name".
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["build_sdist", "build_wheel", "dist_name", "import_name", "native_tag"]

# 2020-01-01T00:00:00Z: after 1980, so ZIP (and flit building from the sdist) accepts it.
_EPOCH = 1577836800
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def dist_name(name: str) -> str:
    """The name as it appears in wheel/sdist filenames: ``Foo.Bar-baz`` -> ``foo_bar_baz``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def import_name(name: str) -> str:
    """The default top-level module for a project name: ``my-pkg`` -> ``my_pkg``."""
    return dist_name(name)


_TAG_PARTS = "import sys, sysconfig; print(sys.version_info[0], sys.version_info[1], sysconfig.get_platform())"


@functools.cache
def native_tag(python: str | Path | None = None) -> str:
    """The most specific tag of ``python`` (default: the running interpreter), e.g.
    ``cp311-cp311-linux_x86_64``: a wheel only that interpreter installs."""
    if python is None:
        major, minor, platform = sys.version_info[0], sys.version_info[1], sysconfig.get_platform()
    else:
        out = subprocess.run(
            [str(python), "-c", _TAG_PARTS], check=True, capture_output=True, text=True
        ).stdout.split()
        major, minor, platform = int(out[0]), int(out[1]), out[2]
    py = f"cp{major}{minor}"
    return f"{py}-{py}-{re.sub(r'[-.]', '_', platform)}"


def _default_modules(name: str, version: str) -> dict[str, str]:
    return {
        f"{import_name(name)}/__init__.py": (
            f'"""{name}: a tiny distribution built by pipfresh.testing.dists."""\n\n'
            f'__version__ = "{version}"\n'
        )
    }


def _metadata(
    name: str,
    version: str,
    requires: Iterable[str],
    requires_python: str | None,
    extras: Iterable[str] = (),
) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {name}: a tiny distribution built by pipfresh.testing.dists",
    ]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _entry_points_txt(entry_points: Mapping[str, Mapping[str, str]]) -> str:
    out = []
    for group, entries in entry_points.items():
        out.append(f"[{group}]")
        out += [f"{key} = {value}" for key, value in entries.items()]
        out.append("")
    return "\n".join(out)


def _expand_tags(tag: str) -> list[str]:
    pythons, abis, platforms = tag.split("-")
    return [
        f"{py}-{abi}-{plat}"
        for py in pythons.split(".")
        for abi in abis.split(".")
        for plat in platforms.split(".")
    ]


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    *,
    requires: Iterable[str] = (),
    requires_python: str | None = None,
    extras: Iterable[str] = (),
    pure: bool = True,
    tag: str | None = None,
    modules: Mapping[str, str] | None = None,
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``out_dir`` and return its path.

    ``modules`` maps paths inside the wheel (``"pkg/__init__.py"``) to source
    text and replaces the default ``<name>/__init__.py``; ``extra_files`` adds
    raw files at any path; ``extras`` are the ``Provides-Extra`` names.  ``tag`` defaults to ``py3-none-any`` when ``pure``
    and to the running interpreter's :func:`native_tag` otherwise (a
    "platform" wheel whose payload is still pure Python, which pip cannot tell).
    """
    if tag is None:
        tag = "py3-none-any" if pure else native_tag()
    stem = f"{dist_name(name)}-{version.replace('-', '_')}"
    info_dir = f"{stem}.dist-info"
    files: dict[str, bytes] = {}
    for path, text in (modules if modules is not None else _default_modules(name, version)).items():
        files[path] = text.encode()
    for path, data in (extra_files or {}).items():
        files[path] = data
    metadata = _metadata(name, version, requires, requires_python, extras)
    files[f"{info_dir}/METADATA"] = metadata.encode()
    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: pipfresh.testing.dists",
        f"Root-Is-Purelib: {'true' if pure else 'false'}",
        *(f"Tag: {t}" for t in _expand_tags(tag)),
    ]
    files[f"{info_dir}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    if entry_points:
        files[f"{info_dir}/entry_points.txt"] = _entry_points_txt(entry_points).encode()
    record_path = f"{info_dir}/RECORD"
    record = [f"{p},{_record_hash(d)},{len(d)}" for p, d in files.items()]
    record.append(f"{record_path},,")
    files[record_path] = ("\n".join(record) + "\n").encode()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():  # RECORD last, as the spec recommends
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return target


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pyproject_toml(
    name: str, version: str, requires: list[str], requires_python: str | None
) -> str:
    """A flit_core ``pyproject.toml`` declaring the same metadata as ``PKG-INFO``."""
    pyproject = [
        "[build-system]",
        'requires = ["flit_core>=3.2,<5"]',
        'build-backend = "flit_core.buildapi"',
        "",
        "[project]",
        f"name = {_toml_str(name)}",
        f"version = {_toml_str(version)}",
        f"description = {_toml_str(f'{name}: a tiny sdist built by pipfresh.testing.dists')}",
        "dependencies = [" + ", ".join(_toml_str(r) for r in requires) + "]",
    ]
    if requires_python is not None:
        pyproject.append(f"requires-python = {_toml_str(requires_python)}")
    pyproject.append(f"\n[tool.flit.module]\nname = {_toml_str(import_name(name))}\n")
    return "\n".join(pyproject)


def build_sdist(
    out_dir: Path,
    name: str,
    version: str,
    *,
    requires: Iterable[str] = (),
    requires_python: str | None = None,
    modules: Mapping[str, str] | None = None,
) -> Path:
    """Write a flit_core-built ``<name>-<version>.tar.gz`` sdist into ``out_dir``.

    pip builds it offline when the index also serves a ``flit_core`` wheel.
    ``modules`` (paths -> source) must contain the top-level module flit looks
    for, :func:`import_name` of ``name``, with a docstring and ``__version__``.
    """
    requires = list(requires)
    stem = f"{dist_name(name)}-{version}"
    files: dict[str, bytes] = {
        "pyproject.toml": _pyproject_toml(name, version, requires, requires_python).encode(),
        "PKG-INFO": _metadata(name, version, requires, requires_python).encode(),
    }
    for path, text in (modules if modules is not None else _default_modules(name, version)).items():
        files[path] = text.encode()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.tar.gz"
    _write_tar_gz(target, stem, files)
    return target


def _write_tar_gz(target: Path, stem: str, files: Mapping[str, bytes]) -> None:
    """``files`` under ``stem/`` with their directories, sorted, at a fixed time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted(
            {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        )
        for d in ["", *dirs]:
            info = tarfile.TarInfo(f"{stem}/{d}".rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
            tf.addfile(info)
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(f"{stem}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, _EPOCH
            tf.addfile(info, io.BytesIO(data))
    with (
        open(target, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=_EPOCH) as gz,
    ):
        gz.write(buf.getvalue())
