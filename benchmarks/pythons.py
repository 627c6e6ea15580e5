"""Finding CPython X.Y on this machine: on PATH as ``pythonX.Y``, else under pyenv."""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path


@functools.cache
def find_python(version: str) -> Path | None:
    """The newest installed CPython ``version`` (``"3.12"``), or ``None``."""
    roots = [Path(os.environ["PYENV_ROOT"]) / "versions"] if os.environ.get("PYENV_ROOT") else []
    roots.append(Path.home() / ".pyenv" / "versions")
    best: tuple[int, Path] | None = None
    for root in roots:
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            m = re.fullmatch(re.escape(version) + r"\.(\d+)", entry.name)
            exe = entry / "bin" / f"python{version}"
            if m and os.access(exe, os.X_OK) and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), exe)
    if best is not None:
        return best[1]
    found = shutil.which(f"python{version}")
    return Path(found) if found else None
