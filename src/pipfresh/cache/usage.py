"""Which cache entries each run used, so a prune can keep what recent installs need.

pip does not say which cache files it read, but its report says what it
installed and from which URL, and pip names each HTTP cache entry by a hash of
that URL: the report names the archive's entry and its PEP 658 ``.metadata``
entry. An sdist's built wheel sits in ``wheels/`` under a name that carries the
project and version. Entries the run wrote (fresh downloads, build
dependencies) count as used too. The store (``store-v1/<sha256>`` in the
partition's ``pipfresh/`` directory) keys every entry by the sha256 of the
archive pip's report names, sdists included: the report names those entries
as well, as ``store-v1/<sha256>``.

The record keeps, per entry, the number and time of the last run that used it:
"used by one of the last N runs" is ``run > runs - N``, and a size cap evicts
the entry used longest ago first. It lives in the partition, so it travels with
a CI cache.

Only an install that installed something is recorded (``runner``): ``--help``,
a failed install, a dry run or a no-op used nothing a later run needs, and
counting it would push the last real install's entries out of ``--keep-runs``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pipfresh.cache import lock
from pipfresh.cache.snapshot import Snapshot, changed
from pipfresh.layout import STORE_LAYOUT, USAGE_FILE, Partition, write_json
from pipfresh.pip import httpcache
from pipfresh.pip.report import Installed

STORE_PREFIX = f"{STORE_LAYOUT}/"  # names of store entries; pip's cache has no such directory


@dataclass
class Usage:
    """``runs`` recorded so far; per entry (a path relative to pip's cache) its last run and time."""

    runs: int = 0
    entries: dict[str, tuple[int, float]] = field(default_factory=dict)

    def used_within(self, rel: str, last: int) -> bool:
        """Whether one of the last ``last`` recorded runs used ``rel``."""
        seen = self.entries.get(rel)
        return seen is not None and seen[0] > self.runs - last

    def last_used(self, rel: str) -> float | None:
        seen = self.entries.get(rel)
        return seen[1] if seen is not None else None


def usage_file(partition: Partition) -> Path:
    return partition.state_dir / USAGE_FILE


def load(partition: Partition) -> Usage:
    """The partition's record; an unreadable or missing one is an empty record."""
    try:
        data = json.loads(usage_file(partition).read_text(encoding="utf-8"))
        runs = int(data["runs"])
        entries = {
            str(rel): (int(seen[0]), float(seen[1])) for rel, seen in data["entries"].items()
        }
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return Usage()
    return Usage(runs, entries)


def record(partition: Partition, used: Iterable[str], now: float | None = None) -> Usage:
    """Count one more run that used ``used``; forget entries whose files are gone.

    Installs share a partition, so the read-modify-write holds a lock of its own.
    """
    now = time.time() if now is None else now
    with lock.hold(partition.state_dir / "usage.lock", shared=False):
        current = load(partition)
        current.runs += 1
        for rel in used:
            current.entries[rel] = (current.runs, now)
        current.entries = {
            rel: seen for rel, seen in current.entries.items() if _exists(partition, rel)
        }
        write_json(
            usage_file(partition),
            {"runs": current.runs, "entries": {k: list(v) for k, v in current.entries.items()}},
        )
    return current


def _exists(partition: Partition, rel: str) -> bool:
    if rel.startswith(STORE_PREFIX):
        return os.path.lexists(partition.state_dir / rel)
    pip_cache = partition.pip_cache
    return os.path.lexists(pip_cache / rel) or os.path.lexists(pip_cache / f"{rel}.body")


def store_rel(sha256: str) -> str:
    """How the record names the store entry of the archive with this sha256."""
    return f"{STORE_PREFIX}{sha256}"


def entry_rel(entry: httpcache.EntryFiles) -> str:
    """How the record names an HTTP cache entry: ``http-v2/a/b/c/d/e/<key>``."""
    return "/".join([entry.fmt, *entry.key[:5], entry.key])


def used_by_run(
    pip_cache: Path, http_dir: str, items: Iterable[Installed], before: Snapshot, after: Snapshot
) -> set[str]:
    """Entries (paths relative to ``pip_cache``, or store names) the run read or wrote."""
    used: set[str] = set()
    for rel in changed(before, after):
        if rel.startswith(("http/", "http-v2/")):
            used.add(rel.removesuffix(".body") if rel.startswith("http-v2/") else rel)
        elif rel.startswith("wheels/") and rel.endswith(".whl"):
            used.add(rel)
    built = built_wheels(after)
    top = pip_cache / http_dir
    for item in items:
        if item.sha256:  # kept only if the store has it (``record`` forgets the rest)
            used.add(store_rel(item.sha256))
        if item.local or not item.url.startswith(("http://", "https://")):
            continue
        for url in (item.url, f"{item.url.split('#', 1)[0]}.metadata"):
            rel = httpcache.entry_path(top, url).relative_to(pip_cache).as_posix()
            if rel in after or f"{rel}.body" in after:
                used.add(rel)
        if not item.is_wheel:
            used.update(built.get(built_key(item), ()))
    return used


def built_wheels(paths: Iterable[str]) -> dict[tuple[str, str], list[str]]:
    """The wheels pip built (``wheels/``), by canonical name and normalized version."""
    found: dict[tuple[str, str], list[str]] = {}
    for rel in paths:
        if not (rel.startswith("wheels/") and rel.endswith(".whl")):
            continue
        try:
            name, version, _build, _tags = parse_wheel_filename(rel.rsplit("/", 1)[-1])
        except InvalidWheelFilename:
            continue
        found.setdefault((str(canonicalize_name(name)), str(version)), []).append(rel)
    return found


def built_key(item: Installed) -> tuple[str, str]:
    """What ``built_wheels`` would file ``item``'s wheel under."""
    return item.canonical_name, _normal(item.version)


def _normal(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        return version
