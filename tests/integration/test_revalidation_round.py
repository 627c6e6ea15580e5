"""One revalidation round per run: when a recorded resolution meets a changed page,
pipfresh's own conditional requests are the only ones a pip >= 26.2 run makes for the
recorded pages, a version published a second ago is still found, and a page nobody
verified in this run is never served from pip's cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, installed_version, pipfresh, store_env
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


def _install(make_venv: MakeVenv, python: Path, pip: str, tmp: Path, *args: str) -> Any:
    """``pipfresh install ARGS`` into a fresh venv; the summary and the venv's python."""
    if (tmp / "env").exists():
        shutil.rmtree(tmp / "env")
    venv = make_venv(python, pip=pip, name="env")
    run = pipfresh(
        "install", "--python", venv.python, *args, env=store_env(), summary=tmp / "s.json"
    ).ok()
    assert run.summary is not None, run
    return run.summary, venv.python


@pytest.mark.parametrize(
    ("wanted", "lib", "how"),
    [
        ("lib>=1", "1.1", "/simple/lib/ changed: lib has a new candidate 1.1"),
        ("lib==1.0", "1.0", "reused: 1 index pages unchanged, 1 changed outside the pins (lib)"),
    ],
)
def test_a_changed_page_costs_one_request_per_recorded_page_in_the_whole_run(
    wanted: str,
    lib: str,
    how: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    args = [*index_args(index), "app", wanted]
    first, _ = _install(make_venv, py311, "26.3", tmp_path, *args)
    assert first["resolution"] == "pip (recorded 2 index pages)", first

    index.publish(build_wheel(dist_dir, "lib", "1.1"))  # inside the pages' max-age
    index.reset_counters()
    second, python = _install(make_venv, py311, "26.3", tmp_path, *args)
    assert how in second["resolution"], second
    counters = index.counters()
    # pipfresh's round: a 304 for app, lib's new page once in full; pip asks nothing.
    assert sorted(counters.paths("index_304")) == ["/simple/app/"], counters.records
    assert sorted(counters.paths("index_200")) == ["/simple/lib/"], counters.records
    assert installed_version(python, "lib") == lib  # fresh: 1.1 is seen when it may be

    # What pip's dry run read from the pages pipfresh stored is recorded, with validators.
    index.reset_counters()
    third, _ = _install(make_venv, py311, "26.3", tmp_path, *args)
    assert third["resolution"] == "reused: 2 index pages unchanged", third
    assert index.counters().index_304 == index.counters().index_requests == 2


def test_a_page_not_verified_in_this_run_is_fetched_not_taken_from_the_cache(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_wheel(dist_dir, "other", "1.0"),
    )
    _install(make_venv, py311, "26.3", tmp_path, *index_args(index), "other")  # cached page
    first, _ = _install(make_venv, py311, "26.3", tmp_path, *index_args(index), "app")
    assert first["resolution"] == "pip (recorded 2 index pages)", first

    # other's cached page is well inside its max-age, and stale: 2.0 is out.
    index.publish(
        build_wheel(dist_dir, "app", "1.1", requires=["lib>=1", "other>=2"]),
        build_wheel(dist_dir, "other", "2.0"),
    )
    index.reset_counters()
    second, python = _install(make_venv, py311, "26.3", tmp_path, *index_args(index), "app")
    assert "/simple/app/ changed" in second["resolution"], second
    assert installed_version(python, "other") == "2.0"
    assert installed_version(python, "app") == "1.1"
    counters = index.counters()
    # app and lib by pipfresh's round (one each); other by pip, in full, since its
    # cached page was not verified in this run.
    assert sorted(counters.paths("index_200")) == ["/simple/app/", "/simple/other/"]
    assert counters.paths("index_304") == ["/simple/lib/"], counters.records


def test_an_older_pip_revalidates_every_page_itself_and_finds_the_changed_one_stored(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """pip < 26.2 sends ``Cache-Control: max-age=0`` for every page: one more conditional
    request per page pip reads (README, "How freshness works"), each a 304, as the
    changed page pipfresh read in full is in pip's cache already."""
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    args = [*index_args(index), "app"]
    first, _ = _install(make_venv, py311, "24.3.1", tmp_path, *args)
    assert first["resolution"] == "pip (recorded 2 index pages)", first

    index.publish(build_wheel(dist_dir, "lib", "1.1"))
    index.reset_counters()
    second, python = _install(make_venv, py311, "24.3.1", tmp_path, *args)
    assert "/simple/lib/ changed" in second["resolution"], second
    counters = index.counters()
    assert counters.paths("index_200") == ["/simple/lib/"], counters.records  # pipfresh's
    assert sorted(counters.paths("index_304")) == ["/simple/app/"] * 2 + ["/simple/lib/"]
    assert installed_version(python, "lib") == "1.1"
