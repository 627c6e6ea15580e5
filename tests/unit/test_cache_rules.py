"""Pure parts of cache maintenance: health's log, the usage record, prune's rules, the walk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipfresh.cache import fs, health, usage
from pipfresh.cache.prune import parse_size, prune, rules_for
from pipfresh.cache.rules import Candidate, Resolutions, SizeCap, Unused
from pipfresh.cache.snapshot import FileState
from pipfresh.errors import PipfreshError
from pipfresh.layout import CacheRoot, Partition
from pipfresh.pip import httpcache
from pipfresh.pip.report import Installed


@pytest.fixture
def partition(tmp_path: Path) -> Partition:
    return CacheRoot(tmp_path / "root").ensure().partition("cp312-cp312-test").ensure()


def _file(path: Path, size: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_dropped_entries_are_counted_by_problem(partition: Partition) -> None:
    assert health.dropped_counts(partition) == {}
    health.log_dropped(partition, [("http-v2/a", "truncated-body")], "install")
    health.log_dropped(partition, [("http-v2/b", "truncated-body"), ("x", "bad-archive")], "prune")
    log = partition.state_dir / "dropped-v1.jsonl"
    log.write_text(log.read_text() + "not json\n")
    assert health.dropped_counts(partition) == {"truncated-body": 2, "bad-archive": 1}


def test_usage_keeps_what_the_last_runs_used(partition: Partition) -> None:
    for rel in ("http-v2/old", "http-v2/new"):
        _file(partition.pip_cache / rel)
    usage.record(partition, ["http-v2/old"], now=1.0)
    usage.record(partition, ["http-v2/new", "http-v2/gone"], now=2.0)
    record = usage.load(partition)
    assert record.runs == 2
    assert "http-v2/gone" not in record.entries  # its files are gone: forgotten
    assert record.used_within("http-v2/new", 1) and not record.used_within("http-v2/old", 1)
    assert record.used_within("http-v2/old", 2)
    assert record.last_used("http-v2/old") == 1.0 and record.last_used("nothing") is None


def test_an_unreadable_usage_record_is_empty(partition: Partition) -> None:
    usage.usage_file(partition).write_text("{]")
    assert usage.load(partition) == usage.Usage()


def test_a_run_used_what_it_wrote_and_what_its_report_names(tmp_path: Path) -> None:
    pip_cache = tmp_path / "pip"
    url = "https://files.example.org/demo-1.0.tar.gz"
    meta = httpcache.entry_path(pip_cache / "http-v2", url).relative_to(pip_cache).as_posix()
    built = "wheels/ab/demo-1.0-py3-none-any.whl"
    state = FileState(1, 1, 1)
    before = {f"{meta}.body": state, meta: state}
    after = {**before, "http-v2/0/1/2/3/4/new.body": FileState(1, 2, 2), built: state}
    item = Installed("Demo", "1.0", url, False, False, True, "a" * 64, False)
    used = usage.used_by_run(pip_cache, "http-v2", [item], before, after)
    assert used == {"http-v2/0/1/2/3/4/new", meta, built, usage.store_rel("a" * 64)}


@pytest.mark.parametrize(
    ("text", "size"),
    [("500M", 500 * 10**6), ("2G", 2 * 10**9), ("1.5GB", 1_500_000_000), ("800k", 800_000)],
)
def test_sizes_are_in_powers_of_1000(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_size_or_mode_is_refused() -> None:
    with pytest.raises(PipfreshError):
        parse_size("lots")
    with pytest.raises(PipfreshError):
        rules_for(mode="everything")
    with pytest.raises(PipfreshError):
        Unused(0)


def test_each_mode_has_its_rules() -> None:
    def names(**kwargs: object) -> list[str]:
        return [type(rule).__name__ for rule in rules_for(**kwargs)]  # type: ignore[arg-type]

    assert names(mode="valid") == ["Leftovers", "Broken", "IndexPages"]
    assert names(mode="valid", keep_index_pages=True) == ["Leftovers", "Broken"]
    assert names(mode="ci")[3:] == ["Downloads", "StoreEntries", "Resolutions"]
    assert names(mode="recent")[3:] == ["Unused", "Resolutions", "StoredBodies"]
    assert names(mode="size")[3:] == ["Resolutions", "SizeCap"]


def test_the_size_cap_evicts_the_store_first_then_the_least_recently_used(
    partition: Partition,
) -> None:
    store = _file(partition.state_dir / "store-v1" / "e" / "f", 10).parent
    old = _file(partition.pip_cache / "wheels" / "old.whl", 10)
    new = _file(partition.pip_cache / "wheels" / "new.whl", 10)
    os.utime(old, (1, 1))
    candidates = [
        Candidate(None, None, None, wheel=new, rel="wheels/new.whl"),
        Candidate(None, None, None, wheel=old, rel="wheels/old.whl"),
        Candidate(None, None, None, rel="store-v1/e", store_entry=store),
    ]
    cap = SizeCap(15)
    cap.prepare(partition, candidates)
    assert [c.rel for c in candidates if cap.drops(c)] == ["wheels/old.whl", "store-v1/e"]


def test_only_the_newest_resolutions_are_kept(partition: Partition) -> None:
    found = []
    for i in range(4):
        path = _file(partition.state_dir / "resolutions-v1" / f"{i}.json")
        os.utime(path, (i, i))
        found.append(Candidate(None, None, None, resolution=path))
    rule = Resolutions(2)
    rule.prepare(partition, found)
    assert [c.resolution.name for c in found if c.resolution and rule.drops(c)] == [
        "0.json",
        "1.json",
    ]


def test_a_prune_drops_leftovers_strays_and_empty_directories(partition: Partition) -> None:
    v2 = partition.pip_cache / "http-v2"
    _file(v2 / "a" / "b" / "c" / "d" / "e" / "f.123.tmp")
    _file(v2 / "stray.txt")
    (partition.pip_cache / "selfcheck").mkdir()
    result = prune(partition, rules_for(mode="valid"))
    assert result.removed == {"temporary": 2, "selfcheck": 1}
    assert not v2.exists() and partition.pip_cache.is_dir()  # emptied, then removed


def test_the_walk_reports_directories_when_asked_and_enters_what_the_rule_allows(
    tmp_path: Path,
) -> None:
    _file(tmp_path / "keep" / "inner" / "file")
    _file(tmp_path / "skip" / "hidden")
    (tmp_path / "link").symlink_to(tmp_path / "keep")
    top = os.fspath(tmp_path)

    def enter(path: str) -> bool:
        return not path.endswith("skip")

    files = sorted(os.path.relpath(p, top) for p, _ in fs.walk(tmp_path, enter=enter))
    assert files == ["keep/inner/file", "link"]
    every = sorted(os.path.relpath(p, top) for p, _ in fs.walk(tmp_path, dirs=True))
    assert every == ["keep", "keep/inner", "keep/inner/file", "link", "skip", "skip/hidden"]
