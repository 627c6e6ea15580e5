"""CI cache keys that never let one interpreter ABI restore another's cache.

``pipfresh-<layout>-<os>-<partition>-<hash of dependency files>``; the restore
prefix stops after the partition, so a fallback restore stays within the ABI.
Only ``[A-Za-z0-9._-]`` appear, which every CI cache accepts.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import PipfreshError
from .partition import LAYOUT_VERSION

# Files that decide what gets installed, looked for when none are named.
DEPENDENCY_PATTERNS = (
    "requirements*.txt",
    "requirements/*.txt",
    "constraints*.txt",
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "tox.ini",
    "noxfile.py",
    "pylock*.toml",
)


@dataclass(frozen=True)
class CacheKey:
    key: str
    restore_prefix: str
    files: tuple[str, ...]


def os_name() -> str:
    system = platform.system().lower()
    return {"darwin": "macos"}.get(system, system or "unknown")


def discover(directory: Path) -> list[Path]:
    """The dependency files in ``directory``, by ``DEPENDENCY_PATTERNS``."""
    found: set[Path] = set()
    for pattern in DEPENDENCY_PATTERNS:
        found.update(p for p in directory.glob(pattern) if p.is_file())
    return sorted(found)


def compute(partition_id: str, files: Sequence[Path], base: Path) -> CacheKey:
    """Hash the files' names (relative to ``base``) and contents."""
    digest = hashlib.sha256()
    names = []
    for path in sorted(files, key=lambda p: _name(p, base)):
        name = _name(path, base)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise PipfreshError(
                f"cannot read {path} for the cache key: {exc.strerror or exc}"
            ) from None
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        names.append(name)
    prefix = f"pipfresh-{LAYOUT_VERSION}-{os_name()}-{partition_id}-"
    return CacheKey(prefix + digest.hexdigest()[:20], prefix, tuple(names))


def _name(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
