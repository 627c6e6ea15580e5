"""Finding the target interpreter and probing it, with the probe cached on disk.

The target may be any Python (a venv without pip, a pre-release, PyPy), so the
facts come from running ``_probe.py`` under it rather than from importing
anything there. Probing costs a process start; the result is cached, keyed by
the interpreter binary and its pip, so a repeated run does not pay for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.errors import InterpreterError
from pipfresh.target import _probe


@dataclass(frozen=True)
class Facts:
    """What pipfresh needs to know about an interpreter (see ``_probe.py``)."""

    executable: str
    prefix: str
    base_prefix: str
    implementation: str
    version_info: tuple[int, int, int, str, int]
    version: str
    cache_tag: str | None
    soabi: str | None
    ext_suffix: str | None
    gil_disabled: bool
    debug: bool
    abiflags: str
    sys_platform: str
    sysconfig_platform: str
    machine: str
    pointer_bits: int
    libc: str | None
    libc_version: str | None
    pip_version: str | None
    pip_init: str | None
    purelib: str | None
    platlib: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Facts:
        values = dict(data)
        values["version_info"] = tuple(values["version_info"])  # type: ignore[arg-type]
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]

    @property
    def is_venv(self) -> bool:
        return self.prefix != self.base_prefix

    @property
    def short_version(self) -> str:
        major, minor, micro, level, serial = self.version_info
        suffix = "" if level == "final" else f"{level[0] if level != 'candidate' else 'rc'}{serial}"
        return f"{major}.{minor}.{micro}{suffix}"


@dataclass(frozen=True)
class Target:
    """The interpreter pip will install into, and why it was chosen."""

    python: Path
    source: str
    facts: Facts


def locate(python: str | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """Pick the target: ``--python``, else ``$VIRTUAL_ENV``, else our own interpreter.

    ``--python`` takes an interpreter, a venv directory, or a command name on PATH.
    """
    if python:
        return _resolve(python, "--python"), "--python"
    venv = environ.get("VIRTUAL_ENV")
    if venv:
        return _resolve(venv, "VIRTUAL_ENV"), "VIRTUAL_ENV"
    return Path(sys.executable), "pipfresh's interpreter"


def _resolve(spec: str, origin: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe"):
            if candidate.exists():
                return Path(os.path.abspath(candidate))
        raise InterpreterError(f"{origin} {spec}: a directory with no bin/python in it")
    if path.exists():
        return Path(os.path.abspath(path))
    if os.sep not in spec:
        found = shutil.which(spec)
        if found:
            return Path(found)
    raise InterpreterError(f"{origin} {spec}: no such interpreter")


def probe(python: Path, cache_dir: Path | None) -> Facts:
    """Return the interpreter's facts, from ``cache_dir`` when still valid."""
    key = _cache_key(python)
    record = (
        cache_dir / f"{hashlib.sha256(str(python).encode()).hexdigest()[:32]}.json"
        if cache_dir
        else None
    )
    if record is not None:
        cached = _read_record(record, key)
        if cached is not None:
            return cached
    facts = _run_probe(python)
    if record is not None:
        _write_record(record, key, facts)
    return facts


def _run_probe(python: Path) -> Facts:
    source = Path(_probe.__file__).read_text(encoding="utf-8")
    try:
        proc = subprocess.run(
            [str(python), "-c", source],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise InterpreterError(f"cannot run {python}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"{python} did not answer the probe within 60 s") from None
    if proc.returncode != 0:
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise InterpreterError(f"{python} is not a usable Python interpreter: {last[0]}")
    try:
        return Facts.from_json(json.loads(proc.stdout))
    except (ValueError, TypeError, KeyError) as exc:
        raise InterpreterError(f"{python}: could not understand its probe output ({exc})") from None


def _stat_key(path: str | Path | None) -> list[int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _cache_key(python: Path) -> list[object]:
    """What must be unchanged for a cached probe to stand.

    The binary (resolved: a venv's python is a link to its base), the venv's
    ``pyvenv.cfg``, and whether and which pip sits in the environment.
    """
    cfg = python.parent.parent / "pyvenv.cfg"
    return [str(python), _stat_key(os.path.realpath(python)), _stat_key(cfg)]


def _read_record(record: Path, key: list[object]) -> Facts | None:
    try:
        data = json.loads(fs.read_text(record))  # a planted link is a miss
        if data.get("key") != key:
            return None
        facts = Facts.from_json(data["facts"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    # pip can be installed, upgraded or removed without touching the binary.
    if facts.pip_init is not None and _stat_key(facts.pip_init) != data.get("pip"):
        return None
    if facts.pip_init is None and facts.purelib and (Path(facts.purelib) / "pip").exists():
        return None
    return facts


def _write_record(record: Path, key: list[object], facts: Facts) -> None:
    data = {"key": key, "pip": _stat_key(facts.pip_init), "facts": asdict(facts)}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)  # checked: CacheRoot.ensure
        fs.write_atomic(record, json.dumps(data))
    except OSError:
        pass  # a probe cache we cannot write only costs time
