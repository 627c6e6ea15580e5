"""One form of each wheel: the body of a wheel the store installed leaves pip's cache as
the install ends, where no later run reads it (``store/bodies.py``), and the next runs,
reused or resolved by pip, download nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from helpers import index_args, pipfresh
from pipfresh.cache import lock
from pipfresh.testing.dists import build_wheel, native_tag


@pytest.fixture
def py311(interpreters: dict[str, Path]) -> Path:
    if "3.11" not in interpreters:
        pytest.skip("needs Python 3.11")
    return interpreters["3.11"]


def install(venv: Any, index: Any, tmp_path: Path, *reqs: str, **env: str) -> dict[str, Any]:
    args = ["install", "--python", venv.python, *index_args(index), *reqs]
    environ = {**os.environ, "PIPFRESH_INSTALLER": "store", **env}
    run = pipfresh(*args, env=environ, summary=tmp_path / "s.json").ok()
    assert run.summary is not None
    return run.summary


def cached_bodies(venv: Any) -> set[str]:
    """The sha256 of every body in the partition's pip HTTP cache."""
    partition = Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())
    return {
        hashlib.sha256(body.read_bytes()).hexdigest()
        for body in (partition / "pip" / "http-v2").rglob("*.body")
    }


def three_wheels(dist_dir: Path, python: Path, version: str = "1.0") -> dict[str, Path]:
    """A wheel for this interpreter alone, one for the stable ABI, one for any Python."""
    own = native_tag(python)
    platform = own.split("-", 2)[2]
    return {
        "own": build_wheel(dist_dir, "own-abi", version, pure=False, tag=own),
        "abi3": build_wheel(
            dist_dir, "stable-abi", version, pure=False, tag=f"cp38-abi3-{platform}"
        ),
        "pure": build_wheel(dist_dir, "any-python", version),
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_wheel_for_this_abi_alone_leaves_pips_cache_and_is_never_fetched_again(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """pip 26.3's dry run reads the ``.metadata``, not the wheel, and no other interpreter
    can use a ``cp311-cp311`` wheel: once the store holds it, its body goes. The ``abi3``
    and pure wheels stay for a sibling partition to seed from."""
    wheels = three_wheels(dist_dir, py311)
    index.publish(*wheels.values())
    pins = ["own-abi==1.0", "stable-abi==1.0", "any-python==1.0"]
    summary = install(make_venv(py311), index, tmp_path, *pins)
    assert summary["installer"] == "store", summary
    assert summary["store_bodies_dropped"] == 1, summary
    left = cached_bodies(make_venv(py311))
    assert sha(wheels["own"]) not in left
    assert {sha(wheels["abi3"]), sha(wheels["pure"])} <= left

    index.publish(*three_wheels(dist_dir, py311, "2.0").values())  # every page changes
    for reqs in (pins, pins[:2], ["own-abi<2", "any-python<2"]):  # reused, then pip resolves
        index.reset_counters()
        venv = make_venv(py311)
        summary = install(venv, index, tmp_path, *reqs)
        assert summary["installer_reason"] == f"{len(reqs)} from the store, 0 added", summary
        counters = index.counters()
        assert counters.paths("file") == [], counters  # no wheel downloaded again
        assert venv.run("-c", "import own_abi; print(own_abi.__version__)").stdout.strip() == "1.0"
    assert summary["resolution"].startswith("pip ("), summary


@pytest.mark.parametrize("case", ["old-pip", "pip-installs", "direct-url"])
def test_the_body_stays_where_a_later_run_reads_it(
    case: str, index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """pip 24.3.1's dry run downloads every wheel it resolves; a run pip installs needs the
    wheel; a direct URL has no ``.metadata`` for pip's dry run to read. Each keeps the
    body, and its next run downloads nothing."""
    wheel = three_wheels(dist_dir, py311)["own"]
    index.publish(wheel)
    pip, req, env = "26.3", "own-abi==1.0", {}
    if case == "old-pip":
        pip = "24.3.1"
    elif case == "pip-installs":
        env = {"PIPFRESH_INSTALLER": "pip"}
    else:
        req = f"own-abi @ {index.file_url(wheel.name)}"
    summary = install(make_venv(py311, pip=pip), index, tmp_path, req, **env)
    assert summary["installer"] == ("pip" if case == "pip-installs" else "store"), summary
    assert summary["store_bodies_dropped"] == 0, summary
    assert sha(wheel) in cached_bodies(make_venv(py311, pip=pip))
    index.reset_counters()
    install(make_venv(py311, pip=pip), index, tmp_path, req, **env)
    assert index.counters().paths("file") == []


def test_a_run_sharing_the_partition_keeps_the_bodies_until_one_runs_alone(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """Another run holding the partition might be reading a body: the install leaves them
    all, and the next run that has the partition to itself drops them."""
    wheel = three_wheels(dist_dir, py311)["own"]
    index.publish(wheel)
    venv = make_venv(py311)
    partition = Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())
    lock_file = partition.parents[1] / "locks-v1" / f"{partition.name}.lock"  # layout's
    with lock.hold(lock_file, shared=True, timeout=5):  # as a run installing meanwhile
        summary = install(venv, index, tmp_path, "own-abi==1.0")
    assert summary["installer"] == "store" and summary["store_bodies_dropped"] == 0, summary
    assert sha(wheel) in cached_bodies(venv)
    summary = install(make_venv(py311), index, tmp_path, "own-abi==1.0")
    assert summary["store_bodies_dropped"] == 1, summary
    assert sha(wheel) not in cached_bodies(venv)
