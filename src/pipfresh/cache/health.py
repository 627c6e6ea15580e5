"""Before pip runs: drop the cache entries that would break it.

pip trusts its cache: a body cut short is served as the file (and fails the
hash check), and metadata that decodes to the wrong shape crashes it. So every
entry is checked once; an entry that passed is remembered by the identity of
its files (inode, size, mtime) and not read again until it changes. A restored
CI cache has new inodes, so it is checked once after every restore.

Only what could *break* pip is dropped here, while other installs may be
running. Metadata whose body is absent or unreadable is among them (pip then
serves the empty inline body); dropping it may cost a concurrent pip the entry
it is writing, never correctness. An orphaned body or a temporary file is a
miss to pip and may be another pip's write in progress: ``prune`` removes
those, under an exclusive lock.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.cache.scan import PartitionScan
from pipfresh.layout import DROPPED_LOG, VERIFIED, Partition, write_json
from pipfresh.pip import httpcache

BREAKS_PIP = frozenset(
    {
        httpcache.Problem.UNREADABLE_METADATA,
        httpcache.Problem.MISSING_BODY,
        httpcache.Problem.TRUNCATED_BODY,
        httpcache.Problem.OVERSIZED_BODY,
        httpcache.Problem.BAD_ENCODING,
        httpcache.Problem.BAD_ARCHIVE,
    }
)


def drop_broken(
    partition: Partition, http_dir: str, scan: PartitionScan | None = None
) -> list[tuple[str, str]]:
    """Check the entries of ``http_dir`` (as ``scan`` found them) that changed since the
    last check; drop broken ones."""
    directory = partition.pip_cache / http_dir
    if not directory.is_dir():
        return []
    record = partition.state_dir / VERIFIED
    known = _load(record)
    verified: dict[str, list[int]] = {}
    dropped: list[tuple[str, str]] = []
    entries = scan.http_entries(http_dir) if scan else httpcache.iter_entry_files(directory)
    for entry in entries:
        if entry.meta is None:
            continue
        ident = f"{http_dir}/{entry.key}"
        fingerprint = [int(x) for x in entry.fingerprint()]
        if fingerprint[0] == -1:
            continue  # removed since the scan (a prune in between): nothing to check
        if known.get(ident) == fingerprint:
            verified[ident] = fingerprint
            continue
        _response, problem = httpcache.check_entry(entry)
        if problem is None:
            verified[ident] = fingerprint
        elif problem in BREAKS_PIP:
            httpcache.remove_entry(entry)
            if scan:
                scan.forget(entry.paths)
            dropped.append((ident, problem.value))
    try:
        write_json(record, verified)
        if dropped:
            log_dropped(partition, dropped, "install")
    except OSError:
        pass  # only costs a re-check next time
    return dropped


def log_dropped(partition: Partition, dropped: list[tuple[str, str]], by: str) -> None:
    """Append to the partition's log of dropped entries, which ``cache info`` reports."""
    now = time.time()
    lines = [
        json.dumps({"time": now, "entry": ident, "problem": problem, "by": by}) + "\n"
        for ident, problem in dropped
    ]
    fs.append_text(partition.state_dir / DROPPED_LOG, "".join(lines))


def dropped_counts(partition: Partition) -> dict[str, int]:
    """How many entries were dropped, by problem, over the partition's life."""
    counts: dict[str, int] = {}
    try:
        lines = fs.read_text(partition.state_dir / DROPPED_LOG).splitlines()
    except (OSError, ValueError):
        return counts
    for line in lines:
        try:
            problem = str(json.loads(line)["problem"])
        except (ValueError, KeyError, TypeError):
            continue
        counts[problem] = counts.get(problem, 0) + 1
    return counts


def _load(record: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(fs.read_text(record))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
