"""The release-day scenarios end to end on a tiny generated corpus (benchmarks/release_day.py).

Real pip 26.3, real uv and pipfresh against the loopback index; checked are the
figures that do not depend on the machine's speed: what the index served and
which version of the freshness probe each contender installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_benchmarks_smoke import VERSION, _corpus, run_benchmarks

CONTENDERS = ("pip", "uv", "uv --refresh", "pipfresh")

pytest.importorskip("zstandard", reason="the bench/test extra provides zstandard")


def test_release_day_scenarios(tmp_path: Path) -> None:
    from benchmarks.pythons import find_python

    if find_python(VERSION) is None:
        pytest.skip(f"the harness finds no CPython {VERSION} (pyenv or PATH)")
    _corpus(tmp_path)
    run_benchmarks(
        tmp_path,
        f"--contenders={','.join(CONTENDERS)}",
        "--scenarios=locked,locked-pinned-release,locked-new-version,locked-upgrade",
        "--released=smoke-lib",
        "--upgraded=smoke-lib",
    )
    results = tmp_path / "results"

    (data_file,) = results.glob("results-*.json")
    runs = [r for r in json.loads(data_file.read_text())["runs"] if r["scenario"] != "fill"]
    by = {(r["scenario"], r["contender"]): r for r in runs}
    assert len(by) == 4 * len(CONTENDERS) and all(r["exit_code"] == 0 for r in runs)
    assert all(r["extra"]["lock_pages"] == 3 for r in runs)  # fresh-probe, smoke-app, smoke-lib

    for name in CONTENDERS:
        # Nothing changed: every page revalidated, nothing downloaded.
        locked = by["locked", name]
        assert locked["index_200"] == 0 and locked["files"] == 0 and not locked["stale"]
        # smoke-lib 2.1 published: its page is new, the lock's answer (2.0) is not.
        pinned = by["locked-pinned-release", name]
        assert pinned["index_200"] >= 1 and pinned["files"] == 0
        assert pinned["probe"] == "1.0" and not pinned["stale"]
        # fresh-probe 1.1 published: the unpinned project's new version is installed.
        new = by["locked-new-version", name]
        assert new["index_200"] >= 1 and new["files"] == 1
        assert new["probe"] == "1.1" and not new["stale"]
        # The lock upgraded to smoke-lib 2.1 (half warm): that wheel alone is downloaded.
        upgrade = by["locked-upgrade", name]
        assert upgrade["index_200"] >= 1 and upgrade["files"] == 1, upgrade
    for name in ("pip", "uv", "pipfresh"):
        assert by["locked", name]["index_304"] == 3  # one conditional request per page
    for name in ("pip", "uv"):
        for scenario in ("locked-pinned-release", "locked-new-version", "locked-upgrade"):
            run = by[scenario, name]
            assert run["index_200"] + run["index_304"] == 3
    upgrade = by["locked-upgrade", "pipfresh"]  # half warm: each page once, asked ahead
    assert upgrade["index_200"] + upgrade["index_304"] == 3, upgrade

    report = next(results.glob("results-*.md")).read_text()
    assert "## Release day, side by side" in report and "× pipfresh locked" in report
    assert "| locked-pinned-release | " in report
