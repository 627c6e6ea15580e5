"""``cache info`` and ``cache prune`` with the store (unpacked wheels) and saved resolutions,
with real pip runs through the store installer against the loopback index."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import index_args, installed_version, pipfresh
from pipfresh.testing.dists import build_sdist, build_wheel


@pytest.fixture
def py311(interpreters: dict[str, Path]) -> Path:
    if "3.11" not in interpreters:
        pytest.skip("needs Python 3.11")
    return interpreters["3.11"]


def store_env() -> dict[str, str]:
    return {**os.environ, "PIPFRESH_INSTALLER": "store"}


def install(venv: Any, index: Any, tmp_path: Path, *reqs: str) -> dict[str, Any]:
    args = ["install", "--python", venv.python, *index_args(index), *reqs]
    run = pipfresh(*args, env=store_env(), summary=tmp_path / "s.json").ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    return run.summary


def partition_of(venv: Any) -> Path:
    return Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())


def prune_json(venv: Any, *args: str) -> dict[str, Any]:
    out = pipfresh("cache", "prune", "--python", venv.python, "--json", *args).ok().stdout
    result: dict[str, Any] = next(iter(json.loads(out).values()))
    return result


def info_json(venv: Any) -> dict[str, Any]:
    out = pipfresh("cache", "info", "--python", venv.python, "--json").ok().stdout
    found: list[dict[str, Any]] = json.loads(out)
    assert len(found) == 1
    return found[0]


def store_of(partition: Path) -> Path:
    return partition / "pipfresh" / "store-v1"


def stored_wheels(partition: Path) -> set[str]:
    """The project of every store entry (from its manifest's wheel name)."""
    store = store_of(partition)
    if not store.is_dir():
        return set()
    return {
        json.loads((entry / "manifest.json").read_text())["wheel"].split("-")[0]
        for entry in store.iterdir()
        if not entry.name.startswith(".")
    }


def publish_three(index: Any, dist_dir: Path) -> None:
    """Two wheels and an sdist (whose store entry is keyed by the sdist's sha256)."""
    index.publish(
        build_wheel(dist_dir, "alpha", "1.0"),
        build_wheel(dist_dir, "beta", "1.0"),
        build_sdist(dist_dir, "built", "0.1"),
    )


def tree_bytes(top: Path) -> int:
    """Bytes of the files below ``top``, as a prune counts them (each file in full)."""
    return sum(os.lstat(os.path.join(d, n)).st_size for d, _, ns in os.walk(top) for n in ns)


def test_recent_keeps_the_store_entries_recent_runs_used(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    publish_three(index, dist_dir)
    venv = make_venv(py311)
    install(venv, index, tmp_path, "alpha", "built")
    partition = partition_of(venv)
    assert stored_wheels(partition) == {"alpha", "built"}
    info = info_json(venv)
    assert info["store_entries"] == 2
    assert info["store_bytes"] == tree_bytes(store_of(partition))
    assert 0 < info["store_linked_bytes"] <= info["store_bytes"]  # installed by hardlink
    pycs = sum(p.stat().st_size for p in store_of(partition).rglob("*.pyc"))
    assert 0 < info["store_bytecode_bytes"] == pycs < info["store_bytes"]
    assert info["linked_bytes"] == 0  # the store's links are not shared with other partitions
    text = pipfresh("cache", "info", "--python", venv.python).ok().stdout
    assert re.search(r"\n  store +2 .*\(bytecode [0-9.]+ MB; ", text), text
    assert "linked into environments" in text, text

    install(venv, index, tmp_path, "beta")
    # Two runs used both: nothing of the store goes.
    assert "unused" not in prune_json(venv, "--mode", "recent", "--keep-runs", "2")["removed"]
    assert len(stored_wheels(partition)) == 3
    # The last run used only beta: alpha's and built's entries go (and alpha's download).
    removed = prune_json(venv, "--mode", "recent", "--keep-runs", "1")["removed"]
    assert removed["unused"] >= 3, removed
    assert stored_wheels(partition) == {"beta"}
    assert info_json(venv)["store_entries"] == 1

    # A fresh environment still gets everything, the store filled again.
    fresh = make_venv(py311)
    summary = install(fresh, index, tmp_path, "alpha", "beta", "built")
    assert summary["installer_reason"] == "1 from the store, 2 added"
    assert installed_version(fresh.python, "alpha") == "1.0"
    assert installed_version(fresh.python, "built") == "0.1"
    assert installed_version(fresh.python, "beta") == "1.0"
    assert len(stored_wheels(partition)) == 3


def test_ci_drops_the_store_and_resolutions_valid_keeps_them(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "alpha", "1.0"), build_sdist(dist_dir, "built", "0.1"))
    venv = make_venv(py311)
    install(venv, index, tmp_path, "alpha", "built")
    partition = partition_of(venv)
    # Saved resolutions (one file per set of install inputs): the run's own (if it saved
    # one: not every run can) and 40 older ones, planted, oldest first.
    saved = partition / "pipfresh" / "resolutions-v1"
    saved.mkdir(exist_ok=True)
    own = len(list(saved.glob("*.json")))
    now = time.time()
    for n in range(40):
        path = saved / f"{n:064x}.json"
        path.write_text(json.dumps({"n": n}))
        os.utime(path, (now - 1000 + n, now - 1000 + n))
    # A link planted where a store entry would be: the prune refuses, follows nothing
    # (every level: tests/integration/test_integrity_links.py), and goes on once it is removed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the cache's")
    link = store_of(partition) / ("f" * 64)
    link.symlink_to(outside)
    refused = pipfresh("cache", "prune", "--python", venv.python, "--mode", "valid")
    assert refused.code == 2 and refused.stderr.startswith(
        f"pipfresh: error: refusing to use {link}"
    )
    assert (outside / "keep.txt").read_text() == "not the cache's"
    link.unlink()

    removed = prune_json(venv, "--mode", "valid")["removed"]
    assert "store" not in removed and "resolution" not in removed, removed
    assert len(stored_wheels(partition)) == 2 and len(list(saved.iterdir())) == 40 + own
    info = info_json(venv)
    assert info["resolutions"] == 40 + own and info["store_entries"] == 2

    assert prune_json(venv, "--mode", "recent")["removed"].get("resolution") == 8 + own
    planted = sorted(p.name for p in saved.iterdir() if int(p.stem, 16) < 40)
    assert planted == [f"{n:064x}.json" for n in range(8 + own, 40)]

    result = prune_json(venv, "--mode", "ci")
    assert result["removed"]["store"] == 2 and result["removed"]["resolution"] == 32, result
    assert stored_wheels(partition) == set() and not list(saved.iterdir())
    assert list((partition / "pip").glob("wheels/**/built-0.1-*.whl")), "built wheels stay"
    assert info_json(venv)["store_entries"] == 0

    index.reset_counters()
    fresh = make_venv(py311)
    summary = install(fresh, index, tmp_path, "alpha", "built")
    assert summary["installer_reason"] == "0 from the store, 2 added"
    assert installed_version(fresh.python, "alpha") == "1.0"
    assert installed_version(fresh.python, "built") == "0.1"
    downloads = index.counters().downloads
    assert downloads.get("alpha-1.0-py3-none-any.whl") == 1, downloads  # ci dropped it
    assert "built-0.1.tar.gz" not in downloads, downloads  # its built wheel was kept


def test_size_cap_evicts_the_store_before_downloads(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    filler = {"old/data.bin": os.urandom(200_000).hex()}  # incompressible, so sizes are real
    index.publish(
        build_wheel(dist_dir, "old", "1.0", modules=filler),
        build_wheel(dist_dir, "new", "1.0"),
    )
    venv = make_venv(py311)
    install(venv, index, tmp_path, "old")
    install(venv, index, tmp_path, "new")  # used later than "old"
    partition = partition_of(venv)
    prune_json(venv, "--mode", "valid")  # leave only files, so sizes are exact
    # Saved resolutions are cache entries too (the runs' own, if they saved them).
    pip_bytes = tree_bytes(partition / "pip") + tree_bytes(partition / "pipfresh/resolutions-v1")
    store_bytes = tree_bytes(store_of(partition))
    assert info_json(venv)["store_bytes"] == store_bytes > 400_000

    # One byte over: the store entry used longest ago goes, though the old wheel is larger.
    result = prune_json(venv, "--max-size", str(pip_bytes + store_bytes - 1))
    assert result["removed"] == {"over-size-cap": 1}, result
    assert stored_wheels(partition) == {"new"}
    assert (
        tree_bytes(partition / "pip") + tree_bytes(partition / "pipfresh/resolutions-v1")
        == pip_bytes
    )

    # Room for the rest only: the whole store goes, every download stays.
    result = prune_json(venv, "--mode", "size", "--max-size", str(pip_bytes))
    assert result["removed"] == {"over-size-cap": 1}, result
    assert stored_wheels(partition) == set()
    assert (
        tree_bytes(partition / "pip") + tree_bytes(partition / "pipfresh/resolutions-v1")
        == pip_bytes
    )

    # The store is rebuilt from pip's cache: nothing is downloaded.
    index.reset_counters()
    fresh = make_venv(py311)
    summary = install(fresh, index, tmp_path, "old", "new")
    assert summary["installer_reason"] == "0 from the store, 2 added"
    assert index.counters().file_requests == 0, index.counters().downloads
    assert installed_version(fresh.python, "old") == "1.0"
    assert len(stored_wheels(partition)) == 2


def test_runs_that_install_nothing_leave_the_last_install_its_entries(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """``--help``, a failed install, a dry run and a no-op are not runs: a prune that keeps
    the last run (the action's default) keeps what the last real install used."""
    index.publish(
        build_wheel(dist_dir, "alpha", "1.0"),
        build_wheel(dist_dir, "beta", "1.0", requires=["alpha"]),
        build_sdist(dist_dir, "built", "0.1"),
    )
    venv = make_venv(py311)
    install(venv, index, tmp_path, "beta", "built")
    usage_file = partition_of(venv) / "pipfresh" / "usage-v1.json"
    assert json.loads(usage_file.read_text())["runs"] == 1

    args = ["install", "--python", venv.python, *index_args(index)]
    assert "--requirement" in pipfresh(*args, "--help", env=store_env()).ok().stdout
    assert pipfresh(*args, "nonexistent-pkg", env=store_env()).code == 1
    pipfresh(*args, "--dry-run", "alpha", env=store_env()).ok()
    noop = pipfresh(*args, "beta", "built", env=store_env(), summary=tmp_path / "s.json").ok()
    assert noop.summary is not None and noop.summary["installed"] == 0, noop.summary
    assert json.loads(usage_file.read_text())["runs"] == 1  # none of them counted

    prune_json(venv, "--mode", "recent", "--keep-runs", "1")
    fresh = make_venv(py311)
    index.reset_counters()
    summary = install(fresh, index, tmp_path, "beta", "built")
    assert index.counters().file_requests == 0, index.counters()
    assert summary["installer_reason"] == "3 from the store, 0 added", summary
    assert installed_version(fresh.python, "built") == "0.1"


def test_recent_drops_the_downloads_the_store_holds_and_nothing_is_fetched_again(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """pip >= 25.3 downloads no wheel in its dry run and the store installs from its entry:
    the wheel bodies the store holds go, and the next install downloads nothing. After a
    pip whose dry run downloads every wheel (24.3.1), they stay."""
    index.publish(
        build_wheel(dist_dir, "alpha", "1.0"),
        build_wheel(dist_dir, "beta", "1.0"),
        build_sdist(dist_dir, "built", "0.1"),  # pip reads the sdist to build its metadata
    )
    install(make_venv(py311), index, tmp_path, "alpha", "beta", "built")
    venv = make_venv(py311)
    removed = prune_json(venv)["removed"]  # the default mode, the action's too
    assert removed.get("stored") == 2, removed  # alpha's and beta's wheels
    for reqs in (["alpha", "beta", "built"], ["alpha", "built"]):  # reused, then resolved
        index.reset_counters()
        summary = install(make_venv(py311), index, tmp_path, *reqs)
        assert summary["installer_reason"] == f"{len(reqs)} from the store, 0 added", summary
        assert summary["uncached"] == 0, summary  # not fetched: nothing to say of caching
        counters = index.counters()
        assert counters.paths("file") == [] and counters.requests("metadata") == 0, counters
    assert summary["resolution"].startswith("pip ("), summary

    old = make_venv(py311, pip="24.3.1")
    index.reset_counters()
    install(old, index, tmp_path, "alpha", "beta", "built")
    assert len(index.counters().paths("file")) == 2  # its dry run downloads them again
    assert "stored" not in prune_json(old)["removed"]
    index.reset_counters()
    install(make_venv(py311, pip="24.3.1"), index, tmp_path, "alpha", "beta", "built")
    assert index.counters().paths("file") == []


def test_info_says_what_each_prune_mode_would_leave(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """``cache info`` previews every mode, removing nothing; each prune then leaves that."""
    publish_three(index, dist_dir)
    venv = make_venv(py311)
    install(venv, index, tmp_path, "alpha", "built")
    install(make_venv(py311), index, tmp_path, "beta")
    partition = partition_of(venv)
    (partition / "pip" / "selfcheck").mkdir()
    (partition / "pip" / "selfcheck" / "x.json").write_text("{}")
    (partition / "pip" / "left.tmp").write_text("a write that never finished")
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    before = tree_bytes(root)
    info = info_json(venv)
    assert set(info["after_prune"]) == {"valid", "ci", "recent", "size"}, info
    assert tree_bytes(root) == before  # a preview removes nothing
    left = info["after_prune"]
    assert left["ci"] < left["recent"] < left["valid"] < info["size"], left
    text = pipfresh("cache", "info", "--python", venv.python).ok().stdout
    assert re.search(r"prune leaves +--mode valid ", text), text
    assert re.search(r"--mode recent +[\d.]+ MB +\(the default\)", text), text
    for mode, expected in left.items():
        copy = tmp_path / f"root-{mode}"
        shutil.copytree(root, copy, symlinks=True)
        env = {**os.environ, "PIPFRESH_CACHE_DIR": str(copy)}
        args = ["--python", venv.python]
        pipfresh("cache", "prune", "--mode", mode, *args, env=env).ok()
        out = pipfresh("cache", "info", "--json", *args, env=env).ok().stdout
        assert json.loads(out)[0]["size"] == expected, mode
