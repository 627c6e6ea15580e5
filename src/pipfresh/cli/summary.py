"""The figures of a run: what was installed, reused, downloaded, built.

Derived from pip's report and from two snapshots of the cache, never from
pip's human output. ``render`` shows them as one line and as JSON (``--summary-json``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipfresh.cache import usage
from pipfresh.cache.snapshot import Snapshot, changed
from pipfresh.pip import httpcache
from pipfresh.pip.report import Installed


@dataclass
class Summary:
    """Figures for one run; ``to_json()`` for programs, ``render.summary_line`` for people."""

    exit_code: int = 0
    command: str = "install"
    dry_run: bool = False
    installed: int = 0
    reused: int = 0
    reused_bytes: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    metadata_downloaded: int = 0
    metadata_bytes: int = 0
    built: int = 0
    reused_built: int = 0
    local: int = 0
    uncached: int = 0
    index_revalidated: int = 0
    index_changed: int = 0
    index_new: int = 0
    dropped: int = 0
    partition: str | None = None
    cache: str = "managed"
    python: str = ""
    python_source: str = ""
    pip: str = ""
    elapsed: float = 0.0
    installer: str = "pip"  # "store" when the fast path installed (fastpath.py)
    installer_reason: str = ""
    resolution: str = ""  # the store installer: pip's dry run, or its last one reused
    store_reverified: int = 0  # store entries hashed again (restored, chowned or changed)
    store_bodies_dropped: int = 0  # downloaded wheels the store holds, left pip's cache (bodies.py)
    interrupted: str | None = None  # Ctrl-C stopped the run in this phase (process.py)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (phases.py)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["summary_version"] = 1
        return data


KindOf = Callable[[Path], "httpcache.CachedResponse | None"]


def account(
    summary: Summary,
    items: Iterable[Installed],
    pip_cache: Path,
    http_dir: str,
    before: Snapshot,
    after: Snapshot,
    read: KindOf,
    stored: Collection[str] = (),
) -> None:
    """Fill ``summary`` from the report items and the cache's change during the run;
    ``stored``: the sha256 of the items the store held before the run (their downloads
    may be pruned: not fetched, so not "uncached")."""
    items = list(items)
    summary.installed = len(items)
    touched = changed(before, after)
    new_wheels = [p for p in touched if p.startswith("wheels") and p.endswith(".whl")]
    summary.built = len(new_wheels)
    built_before = usage.built_wheels(before)

    for item in items:
        if item.local or not item.url.startswith(("http://", "https://")):
            summary.local += 1
            continue
        if not item.is_wheel and usage.built_key(item) in built_before:
            summary.reused_built += 1
            continue
        meta = httpcache.entry_path(pip_cache / http_dir, item.url)
        body_rel = _body_rel(meta.relative_to(pip_cache).as_posix(), http_dir)
        if body_rel in before and body_rel not in touched:
            summary.reused += 1
            summary.reused_bytes += before[body_rel].size
        elif body_rel not in after and item.sha256 not in stored:
            # Fetched, but the server's headers forbade caching it (or sent none).
            summary.uncached += 1

    for rel in sorted(touched):
        if not rel.startswith(("http/", "http-v2/")) or rel.endswith(".body"):
            continue
        fmt = rel.split("/", 1)[0]
        body_rel = _body_rel(rel, fmt)
        body_changed = body_rel in touched
        response = read(pip_cache / rel)
        if response is None:
            continue
        kind = response.kind
        if kind is httpcache.Kind.INDEX_PAGE:
            if rel not in before:
                summary.index_new += 1
            else:
                summary.index_revalidated += 1
                # Old format: one file for headers and body; a 304 rewrites it, same size.
                page_changed = (
                    body_changed if fmt == "http-v2" else before[rel].size != after[rel].size
                )
                if page_changed:
                    summary.index_changed += 1
        elif body_changed and kind in (httpcache.Kind.WHEEL, httpcache.Kind.SDIST):
            summary.downloaded += 1
            summary.downloaded_bytes += after[body_rel].size
        elif body_changed and kind is httpcache.Kind.METADATA:
            summary.metadata_downloaded += 1
            summary.metadata_bytes += after[body_rel].size


def _body_rel(meta_rel: str, fmt: str) -> str:
    return meta_rel + ".body" if fmt == "http-v2" else meta_rel
