"""CI cache keys that never let one interpreter ABI restore another's cache.

``pipfresh-<layout>-<os>-<partition>-<hash of dependency files>``; the restore
prefix stops after the partition, so a fallback restore stays within the ABI.
A pre-release interpreter's ABI is not stable, so its prefix also carries its
full build string (``sys.version``, made safe). Only ``[A-Za-z0-9._-]`` appear,
which every CI cache (GitHub, GitLab, S3-backed runners) accepts.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipfresh.errors import PipfreshError
from pipfresh.layout import LAYOUT_VERSION, partition_id
from pipfresh.target.interpreter import Facts

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


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# GitHub refuses keys over 512 characters; a build string is kept well under that.
_MAX_BUILD = 120


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


def safe(text: str, limit: int = _MAX_BUILD) -> str:
    """``text`` with every run of characters a CI cache may refuse turned into one ``_``."""
    return _UNSAFE.sub("_", text).strip("_")[:limit].rstrip("_")


def build_string(facts: Facts) -> str | None:
    """The full build string of a pre-release interpreter, made key-safe; None for a final."""
    if facts.version_info[3] == "final":
        return None
    return safe(facts.version) or None


def for_target(facts: Facts, files: Sequence[Path], base: Path) -> CacheKey:
    """The key of the partition ``facts`` selects."""
    return compute(partition_id(facts), files, base, build=build_string(facts))


def compute(
    partition_id: str, files: Sequence[Path], base: Path, *, build: str | None = None
) -> CacheKey:
    """Hash the files' names (relative to ``base``) and contents.

    ``build`` (a pre-release's build string) goes into the restore prefix: two
    builds of 3.14.0a1 must not restore each other's cache.
    """
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
    if build:
        prefix += f"{safe(build)}-"
    return CacheKey(prefix + digest.hexdigest()[:20], prefix, tuple(names))


def _name(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
