"""A changed page keeps the recorded resolution only when it offers the same within the
root pins (``resolve.candidates``): the locked CI day after a release is a warm run, and
whatever pip could pick differently is pip's to resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MakeVenv
from helpers import index_args, installed_version, pipfresh, store_env
from integration.test_reuse import Installs
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


@pytest.fixture
def locked(index: PackageIndex, dist_dir: Path, tmp_path: Path) -> list[str]:
    """app 1.0 needing lib, both pinned in a requirements file (a lock)."""
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("app==1.0\nlib==1.0\n")
    return [*index_args(index), "-r", str(reqs)]


def test_a_release_of_a_pinned_project_keeps_the_resolution(
    locked: list[str],
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    install = Installs(make_venv, py311, "26.3", tmp_path)
    assert install(*locked)["resolution"] == "pip (recorded 2 index pages)"
    index.publish(build_wheel(dist_dir, "lib", "1.1"))
    index.reset_counters()
    second = install(*locked)
    assert second["resolution"] == (
        "reused: 1 index pages unchanged, 1 changed outside the pins (lib)"
    ), second
    # pip's dry run did not run: one request per page, no metadata, no file.
    records = index.counters().records
    assert sorted((r.path, r.status) for r in records) == [
        ("/simple/app/", 304),
        ("/simple/lib/", 200),
    ]
    assert installed_version(install.venv.python, "lib") == "1.0"
    # The page as it is now is recorded: the next run finds it unchanged.
    assert install(*locked)["resolution"] == "reused: 2 index pages unchanged"


def test_a_release_of_an_unpinned_project_is_picked(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    install = Installs(make_venv, py311, "26.3", tmp_path)
    args = [*index_args(index), "app==1.0"]
    install(*args)
    index.publish(build_wheel(dist_dir, "lib", "1.1"))
    second = install(*args)
    page = f"{index.index_url}lib/"
    assert second["resolution"].startswith(f"pip ({page} changed: lib has a new candidate 1.1;")
    assert installed_version(install.venv.python, "lib") == "1.1"


@pytest.mark.parametrize("change", ["wheel", "yank", "requires-python"])
def test_a_change_within_the_pins_is_resolved_by_pip(
    change: str,
    locked: list[str],
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    """A new wheel of the pinned version, a yank of the pinned file, the pinned file
    replaced with one for another Python: pip's answer may differ, so pip resolves."""
    install = Installs(make_venv, py311, "26.3", tmp_path)
    install(*locked)
    page = f"{index.index_url}lib/"
    (dist_dir / "new").mkdir()
    if change == "wheel":
        tag = "py311-none-any"
        index.publish(build_wheel(dist_dir / "new", "lib", "1.0", tag=tag))
        said = f"lib has a new candidate lib-1.0-{tag}.whl"
    elif change == "yank":
        index.yank("lib-1.0-py3-none-any.whl", "broken")
        said = "lib has a changed candidate lib-1.0-py3-none-any.whl"
    else:
        index.publish(build_wheel(dist_dir / "new", "lib", "1.0", requires_python=">=3.99"))
        said = "lib has a changed candidate lib-1.0-py3-none-any.whl"
    index.reset_counters()
    venv = make_venv(py311, pip="26.3", name="again")
    run = pipfresh(
        "install", "--python", venv.python, *locked, env=store_env(), summary=tmp_path / "s.json"
    )
    assert (run.code != 0) == (change == "requires-python"), run
    summary = run.summary
    assert summary is not None and summary["resolution"].startswith(
        f"pip ({page} changed: {said}"
    ), summary
    assert any(r.path == "/simple/lib/" and r.status == 200 for r in index.counters().records)
