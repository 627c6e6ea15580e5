"""Running pipfresh the way a user does: as a process, with pip's real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def index_args(index: Any) -> list[str]:
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
