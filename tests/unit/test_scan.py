"""One ``PartitionScan`` serves the whole before-pip phase, with the answers of the old walks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipfresh.cache import fs, health, repair, share, snapshot
from pipfresh.cache.scan import PartitionScan
from pipfresh.layout import STORE_LAYOUT, CacheRoot, Partition
from pipfresh.pip import httpcache

URL = "https://files.example.org/packages/demo-1.0.tar.gz"


def _entry(http_dir: Path, tmp_path: Path, url: str, body: bytes, length: int) -> Path:
    source = tmp_path / f"body-{len(list(tmp_path.iterdir()))}"
    source.write_bytes(body)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
    httpcache.write_response(http_dir, url, headers, source)
    return httpcache.entry_path(http_dir, url)


@pytest.fixture
def partition(tmp_path: Path) -> Partition:
    """A partition with good and broken entries, leftovers, a built wheel and a store."""
    part = CacheRoot(tmp_path / "root").ensure().partition("cp312-cp312-test").ensure()
    bodies = tmp_path / "bodies"
    bodies.mkdir()
    v2 = part.pip_cache / "http-v2"
    for i in range(3):
        _entry(v2, bodies, f"{URL}?good={i}", b"x" * 100, 100)
    broken = _entry(v2, bodies, f"{URL}?broken", b"x" * 10, 100)  # truncated
    (broken.parent / f"{broken.name}.123.tmp").write_bytes(b"half")  # a leftover
    (v2 / "stray.txt").write_text("not pip's")
    (v2 / "not-hex").mkdir()
    (v2 / "not-hex" / "ignored").write_text("")
    wheels = part.pip_cache / "wheels" / "ab" / "cd"
    wheels.mkdir(parents=True)
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    (part.pip_cache / "wheels" / "w.whl.9.tmp").write_bytes(b"")
    entry = part.state_dir / STORE_LAYOUT / ("0" * 64)
    entry.mkdir(parents=True)
    (entry / "shipped.tmp").write_text("a wheel's own file")  # never swept
    return part


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tops of every ``fs.walk`` made (each walk is one tree traversal)."""
    seen: list[str] = []
    real = fs.walk

    def counting(
        top: str | Path, *args: object, **kwargs: object
    ) -> Iterator[tuple[str, os.stat_result]]:
        seen.append(os.fspath(top))
        return real(top, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fs, "walk", counting)
    return seen


def _inside(partition: Partition, tops: list[str]) -> list[str]:
    prefix = os.fspath(partition.path)
    return [top for top in tops if top == prefix or top.startswith(prefix + os.sep)]


def test_the_before_pip_phase_walks_the_partition_once(
    partition: Partition, walks: list[str]
) -> None:
    scan = PartitionScan(partition)
    assert repair.make_usable(partition, scan) is None
    assert repair.remove_leftovers(partition, scan) > 0
    dropped = health.drop_broken(partition, "http-v2", scan)
    share.seed_from_siblings(partition, "http-v2", scan)
    before = scan.snapshot()
    assert _inside(partition, walks) == [os.fspath(partition.path)]
    assert [problem for _ident, problem in dropped] == ["truncated-body"]
    assert before == snapshot.take(partition.pip_cache)  # the scan saw every change


def test_the_after_snapshot_is_one_walk(partition: Partition, walks: list[str]) -> None:
    snapshot.take(partition.pip_cache)
    assert walks == [os.fspath(partition.pip_cache)]


def test_a_scan_answers_as_the_walks_did(partition: Partition) -> None:
    scan = PartitionScan(partition)
    v2 = partition.pip_cache / "http-v2"
    assert list(scan.http_entries("http-v2")) == list(httpcache.iter_entry_files(v2))
    assert scan.snapshot() == snapshot.take(partition.pip_cache)
    store = os.fspath(partition.state_dir / STORE_LAYOUT)
    walked = fs.walk(partition.path, skip={store})
    assert sorted(scan.leftovers()) == sorted(p for p, _ in walked if p.endswith(".tmp"))
    euid = os.geteuid()
    old = repair.survey(partition.path, euid, skip=frozenset({store}))
    assert repair._findings(partition.path, euid, repair._scanned(partition.path, scan)) == old


def test_what_a_step_removes_the_scan_forgets(partition: Partition) -> None:
    scan = PartitionScan(partition)
    health.drop_broken(partition, "http-v2", scan)
    assert scan.snapshot() == snapshot.take(partition.pip_cache)
    assert not [e for e in scan.http_entries("http-v2") if e.meta and not e.meta.exists()]


def test_a_repair_makes_the_scan_walk_again(partition: Partition, walks: list[str]) -> None:
    target = partition.path.parent / "elsewhere"
    target.write_text("")
    (partition.pip_cache / "http-v2" / "planted").symlink_to(target)
    scan = PartitionScan(partition)
    note = repair.make_usable(partition, scan)
    assert note is not None and "removed 1 symlinks" in note
    assert not any(p.endswith("planted") for p in scan.found)
    assert _inside(partition, walks) == [os.fspath(partition.path)] * 2
