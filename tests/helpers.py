"""Running pipfresh the way a user does: as a process, with pip's real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipfresh.testing.index import PackageIndex


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None

    def ok(self) -> Run:
        assert self.code == 0, (
            f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )
        return self


def pipfresh(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    summary: Path | None = None,
) -> Run:
    """``python -m pipfresh ARGS``; with ``summary``, also read ``--summary-json``."""
    argv = [sys.executable, "-m", "pipfresh", *map(str, args)]
    if summary is not None:
        argv += ["--summary-json", str(summary)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, env=env or dict(os.environ), timeout=600
    )
    data = None
    if summary is not None and summary.exists():
        data = json.loads(summary.read_text())
        summary.unlink()
    return Run(proc.returncode, proc.stdout, proc.stderr, data)


@dataclass(frozen=True)
class Venv:
    """A throwaway virtual environment made by ``make_venv``."""

    path: Path
    python: Path
    bin: Path

    def run(
        self, *args: str | os.PathLike[str], check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's python with ``args``; on failure the error shows the output."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        proc: subprocess.CompletedProcess[str] = subprocess.run(
            [str(self.python), *map(str, args)], check=False, **kwargs
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.python} {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    def pip(
        self, *args: str | os.PathLike[str], check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pip", *args, check=check, **kwargs)


def install(
    venv: Venv | Path,
    *reqs: str | Path,
    index: PackageIndex,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    summary: Path | None = None,
) -> Run:
    """``pipfresh install --python VENV --index-url INDEX... REQS``: most end-to-end tests'
    install; ``venv`` is a ``Venv`` or an interpreter."""
    python = venv.python if isinstance(venv, Venv) else venv
    return pipfresh(
        "install", "--python", python, *index_args(index), *reqs, cwd=cwd, env=env, summary=summary
    )


def index_args(index: PackageIndex) -> list[str]:
    return ["--index-url", index.index_url, "--trusted-host", index.host]


def installed_version(python: Path, name: str) -> str | None:
    code = f"import importlib.metadata as m\ntry: print(m.version({name!r}))\nexcept m.PackageNotFoundError: print('')"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return out or None


def store_env(**extra: str) -> dict[str, str]:
    """The environment with the store installer chosen explicitly, plus ``extra``."""
    return {**os.environ, "PIPFRESH_INSTALLER": "store", **extra}
