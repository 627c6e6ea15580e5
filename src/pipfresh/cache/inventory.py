"""What a partition holds, by kind: the figures behind ``pipfresh cache info``.

Sizes count a hardlinked file once. Outside the store, a file with other links
shares its bytes with another partition (``share``); inside the store, with the
environments it was installed into.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from pipfresh.cache import fs, health
from pipfresh.layout import RESOLUTIONS, STORE_LAYOUT, Partition
from pipfresh.pip import httpcache


@dataclass
class Inventory:
    id: str
    path: str
    size: int = 0
    linked_bytes: int = 0  # stored once and shared with another partition
    entries: dict[str, int] = field(default_factory=dict)
    entry_bytes: dict[str, int] = field(default_factory=dict)
    built_wheels: int = 0
    built_bytes: int = 0
    store_entries: int = 0  # wheels unpacked with their bytecode, ready to link
    store_bytes: int = 0
    store_linked_bytes: int = 0  # of which also linked elsewhere (venvs, other partitions)
    store_bytecode_bytes: int = 0  # of which ``.pyc``: compiled once per ABI, not per install
    resolutions: int = 0  # saved resolutions, reused after their pages are revalidated
    resolution_bytes: int = 0
    broken: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    python: str | None = None
    pip_version: str | None = None
    last_used: float | None = None
    after_prune: dict[str, int] = field(default_factory=dict)  # bytes left, per prune mode

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def take(partition: Partition) -> Inventory:
    info = partition.read_info()
    inv = Inventory(
        id=partition.id,
        path=str(partition.path),
        python=info.get("python"),
        pip_version=info.get("pip_version"),
        last_used=info.get("last_used"),
        dropped=health.dropped_counts(partition),
    )
    store = os.path.join(partition.state_dir, STORE_LAYOUT) + os.sep
    resolutions = os.path.join(partition.state_dir, RESOLUTIONS) + os.sep
    wheels = os.path.join(partition.pip_cache, "wheels") + os.sep
    entries: set[str] = set()
    seen: set[tuple[int, int]] = set()
    for path, st in fs.walk(partition.path):
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        inv.size += st.st_size
        if path.startswith(store):
            name = path[len(store) :].split(os.sep, 1)[0]
            if name.startswith(".tmp-"):
                continue  # being added, or left by an add that never finished
            entries.add(name)
            inv.store_bytes += st.st_size
            if st.st_nlink > 1:
                inv.store_linked_bytes += st.st_size
            if path.endswith(".pyc"):
                inv.store_bytecode_bytes += st.st_size
            continue
        if st.st_nlink > 1:
            inv.linked_bytes += st.st_size
        if path.startswith(wheels) and path.endswith(".whl"):
            inv.built_wheels += 1
            inv.built_bytes += st.st_size
        elif path.startswith(resolutions) and _is_resolution(path[len(resolutions) :]):
            inv.resolutions += 1
            inv.resolution_bytes += st.st_size
    inv.store_entries = len(entries)
    for http_dir in ("http", "http-v2"):
        directory = partition.pip_cache / http_dir
        if not directory.is_dir():
            continue
        for entry in httpcache.iter_entry_files(directory):
            response, problem = httpcache.check_entry(entry)
            if problem is not None:
                inv.broken[problem.value] = inv.broken.get(problem.value, 0) + 1
                continue
            assert response is not None
            kind = response.kind.value
            inv.entries[kind] = inv.entries.get(kind, 0) + 1
            inv.entry_bytes[kind] = inv.entry_bytes.get(kind, 0) + response.body_size
    return inv


def _is_resolution(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".tmp-") and os.sep not in name
