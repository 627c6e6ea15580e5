"""Bad cache input, prune, purge and info, with real pip runs against the loopback index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import MakeVenv
from helpers import Venv, install, installed_version, pipfresh
from pipfresh.pip import httpcache
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex


@pytest.fixture
def py311(interpreters: dict[str, Path]) -> Path:
    if "3.11" not in interpreters:
        pytest.skip("needs Python 3.11")
    return interpreters["3.11"]


def _install(venv: Venv, index: PackageIndex, tmp_path: Path, *reqs: str) -> dict:
    """Plain pip: these tests are about pip's own cache (the store is tested on its own)."""
    run = install(
        venv,
        *reqs,
        env={**os.environ, "PIPFRESH_INSTALLER": "pip"},
        summary=tmp_path / "s.json",
        index=index,
    ).ok()
    assert run.summary is not None
    return run.summary


def _partition(venv: Venv) -> Path:
    return Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())


def _wheel_entry(partition: Path, index: PackageIndex, filename: str) -> httpcache.EntryFiles:
    meta = httpcache.entry_path(partition / "pip" / "http-v2", index.file_url(filename))
    assert meta.exists(), f"no cache entry for {filename}"
    return httpcache.entry_files_for(meta)


@pytest.mark.parametrize(
    "damage",
    [
        "truncated-body",
        "garbage-metadata",
        "wrong-shape-metadata",
        "missing-body",
        "zero-byte-body",
    ],
)
def test_a_damaged_entry_never_breaks_an_install(
    damage: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    index.publish(
        build_wheel(dist_dir, "demo", "1.0", modules={"demo/__init__.py": "x = 1\n" * 2000})
    )
    first = make_venv(py311, pip="26.3")
    _install(first, index, tmp_path, "demo")
    entry = _wheel_entry(_partition(first), index, "demo-1.0-py3-none-any.whl")
    assert entry.meta is not None and entry.body is not None
    if damage == "truncated-body":
        data = entry.body.read_bytes()
        entry.body.write_bytes(data[: len(data) // 2])
    elif damage == "garbage-metadata":
        entry.meta.write_bytes(b"\x00\xffnot a cache entry")
    elif damage == "wrong-shape-metadata":
        entry.meta.write_bytes(b"cc=4,\x01")  # valid msgpack, an int: pip itself would crash on it
    elif damage == "missing-body":
        entry.body.unlink()
    elif damage == "zero-byte-body":
        entry.body.write_bytes(b"")

    index.reset_counters()
    second = make_venv(py311, pip="26.3")
    summary = _install(second, index, tmp_path, "demo")
    assert installed_version(second.python, "demo") == "1.0"
    assert index.counters().downloads.get("demo-1.0-py3-none-any.whl") == 1, "fetched again"
    assert summary["dropped"] == 1
    # The fetched-again entry is whole: a third run downloads nothing.
    index.reset_counters()
    _install(make_venv(py311, pip="26.3"), index, tmp_path, "demo")
    assert index.counters().file_bytes == 0


def test_missing_interpreter_and_unusable_root_are_one_line_errors(tmp_path: Path) -> None:
    run = pipfresh("install", "--python", tmp_path / "no" / "python", "demo")
    assert run.code == 2
    assert run.stderr.strip().count("\n") == 0 and "no such interpreter" in run.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = dict(os.environ, PIPFRESH_CACHE_DIR=str(blocker / "cache"))
    run = pipfresh("install", "demo", env=env)
    assert run.code == 2 and run.stderr.startswith("pipfresh: error: cannot use cache root")
    env = dict(os.environ, PIPFRESH_CACHE_DIR=str(blocker))
    run = pipfresh("cache", "dir", env=env)
    assert run.code == 2 and "not a directory" in run.stderr


def test_prune_drops_pages_keeps_files_and_built_wheels(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["built"]),
        build_sdist(dist_dir, "built", "0.3"),
    )
    venv = make_venv(py311, pip="26.3")
    _install(venv, index, tmp_path, "app")
    partition = _partition(venv)
    (partition / "pip" / "http-v2" / "leftover.tmp").write_bytes(b"half")
    (partition / "pip" / "selfcheck").mkdir()
    (partition / "pip" / "selfcheck" / "x.json").write_text("{}")

    info = json.loads(pipfresh("cache", "info", "--python", venv.python, "--json").ok().stdout)[0]
    assert info["entries"]["index-page"] >= 2 and info["entries"]["wheel"] >= 2
    assert info["entries"]["sdist"] == 1 and info["built_wheels"] == 1

    out = json.loads(pipfresh("cache", "prune", "--python", venv.python, "--json").ok().stdout)
    removed = out[partition.name]["removed"]
    assert removed["index-page"] == info["entries"]["index-page"]
    assert removed["temporary"] == 1 and removed["selfcheck"] == 1
    after = json.loads(pipfresh("cache", "info", "--python", venv.python, "--json").ok().stdout)[0]
    assert (
        "index-page" not in after["entries"]
        and after["entries"]["wheel"] == info["entries"]["wheel"]
    )

    index.reset_counters()
    summary = _install(make_venv(py311, pip="26.3"), index, tmp_path, "app")
    counters = index.counters()
    assert counters.file_bytes == 0 and counters.index_304 == 0 and counters.index_200 > 0
    assert summary["built"] == 0 and summary["reused_built"] == 1

    # --ci also drops downloads, keeps the wheel built from the sdist.
    pipfresh("cache", "prune", "--ci", "--python", venv.python).ok()
    index.reset_counters()
    summary = _install(make_venv(py311, pip="26.3"), index, tmp_path, "app")
    assert index.counters().downloads.get("app-1.0-py3-none-any.whl") == 1
    assert "built-0.3.tar.gz" not in index.counters().downloads
    assert summary["built"] == 0 and summary["reused_built"] == 1


def test_keep_index_pages_turns_the_next_run_into_304s(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    _install(venv, index, tmp_path, "demo")
    pipfresh("cache", "prune", "--keep-index-pages", "--python", venv.python).ok()
    index.reset_counters()
    _install(make_venv(py311, pip="26.3"), index, tmp_path, "demo")
    counters = index.counters()
    assert counters.index_requests == counters.index_304 > 0


def test_legacy_http_dir_is_dropped_once_pip_writes_http_v2(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    old = make_venv(py311, pip="23.0.1")
    _install(old, index, tmp_path, "demo")
    partition = _partition(old)
    assert (partition / "pip" / "http").is_dir() and not (partition / "pip" / "http-v2").exists()
    pipfresh("cache", "prune", "--python", old.python).ok()
    assert (partition / "pip" / "http").is_dir(), "pip 23.0 still reads http/: keep it"

    new = make_venv(py311, pip="26.3")
    _install(new, index, tmp_path, "demo")
    out = json.loads(pipfresh("cache", "prune", "--python", new.python, "--json").ok().stdout)
    assert out[partition.name]["removed"]["legacy-http"] == 1
    assert not (partition / "pip" / "http").exists() and (partition / "pip" / "http-v2").is_dir()


def test_purge_and_prune_refuse_a_root_pipfresh_did_not_create(tmp_path: Path) -> None:
    foreign = tmp_path / "home"
    (foreign / "partitions-v1" / "x").mkdir(parents=True)
    (foreign / "precious.txt").write_text("keep me")
    env = dict(os.environ, PIPFRESH_CACHE_DIR=str(foreign))
    for action in ("purge", "prune"):
        run = pipfresh("cache", action, "--all", env=env)
        assert run.code == 2 and "did not create" in run.stderr
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_purge_empties_one_partition(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    _install(venv, index, tmp_path, "demo")
    partition = _partition(venv)
    assert partition.is_dir()
    assert "purged" in pipfresh("cache", "purge", "--python", venv.python).ok().stdout
    assert not partition.exists()
    assert (partition.parent.parent / ".pipfresh-root").exists()
    index.reset_counters()
    _install(make_venv(py311, pip="26.3"), index, tmp_path, "demo")
    assert index.counters().downloads.get("demo-1.0-py3-none-any.whl") == 1
