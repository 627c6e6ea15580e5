"""pipfresh install with real pip against the loopback index: fresh and reusing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import MakeVenv
from helpers import index_args, install, installed_version, pipfresh
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex

PIPS = ["23.0.1", "23.3.2", "24.3.1", "25.3", "26.3"]


def publish(index: PackageIndex, dist_dir: Path, *dists: Path) -> None:
    index.publish(*dists)


@pytest.mark.parametrize("pip_version", PIPS)
def test_new_version_is_found_within_max_age(
    pip_version: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    first = make_venv(py311, pip=pip_version)
    install(first, "demo", index=index).ok()
    assert installed_version(first.python, "demo") == "1.0"

    index.publish(build_wheel(dist_dir, "demo", "1.1"))  # seconds later, well inside max-age=600
    second = make_venv(py311, pip=pip_version)
    run = install(
        second,
        "demo",
        summary=tmp_path / "s.json",
        index=index,
    ).ok()
    assert installed_version(second.python, "demo") == "1.1"
    assert run.summary is not None and run.summary["index_changed"] >= 1


def test_plain_pip_263_installs_the_stale_version(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """The problem pipfresh solves, shown with the same index: pip 26.3 trusts max-age."""
    import subprocess

    cache = tmp_path / "plain-pip-cache"
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    for version in ("1.0", "1.1"):
        if version == "1.1":
            index.publish(build_wheel(dist_dir, "demo", "1.1"))
        venv = make_venv(py311, pip="26.3")
        subprocess.run(
            [
                str(venv.python),
                "-m",
                "pip",
                "install",
                "-q",
                "--cache-dir",
                str(cache),
                *index_args(index),
                "demo",
            ],
            check=True,
        )
        assert installed_version(venv.python, "demo") == "1.0"  # stale on the second run


def _workload(index: PackageIndex, dist_dir: Path) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1", "built"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_wheel(dist_dir, "lib", "1.2"),
        build_sdist(dist_dir, "built", "0.3"),
    )


@pytest.mark.parametrize("pip_version", ["23.0.1", "26.3"])
def test_second_run_downloads_nothing_and_revalidates_every_page(
    pip_version: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    _workload(index, dist_dir)
    first = make_venv(py311, pip=pip_version)
    cold = install(first, "app", summary=tmp_path / "s.json", index=index).ok()
    assert cold.summary is not None
    assert cold.summary["installed"] == 3 and cold.summary["built"] == 1
    assert cold.summary["downloaded"] >= 2
    assert installed_version(first.python, "lib") == "1.2"

    index.reset_counters()
    second = make_venv(py311, pip=pip_version)
    warm = install(second, "app", summary=tmp_path / "s.json", index=index).ok()
    counters = index.counters()
    assert counters.file_bytes == 0 and counters.metadata_bytes == 0, counters
    assert counters.index_requests > 0 and counters.index_304 == counters.index_requests, counters
    assert warm.summary is not None
    assert warm.summary["downloaded"] == 0 and warm.summary["built"] == 0
    assert warm.summary["reused"] == 2 and warm.summary["reused_built"] == 1
    assert warm.summary["index_revalidated"] == counters.index_requests
    assert "installed 3" in warm.stderr and "partition cp311-" in warm.stderr
    assert {installed_version(second.python, n) for n in ("app", "lib", "built")} == {
        "1.0",
        "1.2",
        "0.3",
    }


def test_partitions_keep_built_wheels_apart(
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    interpreters: dict[str, Path],
    tmp_path: Path,
) -> None:
    if not {"3.11", "3.12"} <= interpreters.keys():
        pytest.skip("needs Python 3.11 and 3.12")
    index.publish(build_sdist(dist_dir, "built", "0.3"), build_wheel(dist_dir, "pure", "1.0"))
    dirs = {}
    for version in ("3.11", "3.12"):
        venv = make_venv(interpreters[version], pip="26.3")
        run = install(
            venv,
            "built",
            "pure",
            summary=tmp_path / "s.json",
            index=index,
        ).ok()
        assert run.summary is not None and run.summary["built"] == 1, (
            f"{version} must build its own wheel"
        )
        assert run.summary["reused"] == (0 if version == "3.11" else 2)  # 3.11 downloaded both
        dirs[version] = Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())
    assert dirs["3.11"] != dirs["3.12"]
    assert "cp311" in dirs["3.11"].name and "cp312" in dirs["3.12"].name
    for version, directory in dirs.items():
        built = list((directory / "pip" / "wheels").rglob("*.whl"))
        assert len(built) == 1, (version, built)
    # The second partition starts from the first one's files: each is downloaded once
    # and stored once (hardlinked), while each partition builds its own wheel.
    downloads = index.counters().downloads
    assert downloads["pure-1.0-py3-none-any.whl"] == 1 and downloads["built-0.3.tar.gz"] == 1, (
        downloads
    )
    bodies = [
        {p.relative_to(d).as_posix(): p.stat() for p in (d / "pip" / "http-v2").rglob("*.body")}
        for d in dirs.values()
    ]
    shared = [
        rel
        for rel in bodies[0]
        if rel in bodies[1] and bodies[0][rel].st_ino == bodies[1][rel].st_ino
    ]
    assert shared, "identical downloads in two partitions should be hardlinked"


def test_venv_without_pip_uses_pipfreshs_pip(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip=None)
    run = install(venv.path, "demo", summary=tmp_path / "s.json", index=index).ok()
    assert installed_version(venv.python, "demo") == "1.0"
    assert run.summary is not None and "via --python" in run.summary["pip"]


def test_virtual_env_is_the_default_target(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    env = dict(os.environ, VIRTUAL_ENV=str(venv.path))
    run = pipfresh("install", *index_args(index), "demo", env=env).ok()
    assert installed_version(venv.python, "demo") == "1.0"
    assert "(VIRTUAL_ENV)" in run.stderr


def test_pip_exit_code_passes_through(
    index: PackageIndex, make_venv: MakeVenv, py311: Path
) -> None:
    venv = make_venv(py311, pip="26.3")
    run = install(venv, "no-such-package", index=index)
    assert run.code == 1
    assert "pip exited 1" in run.stderr
    assert pipfresh("install", "--python", venv.python, "--no-such-option").code == 2


def test_quiet_silences_the_summary(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    run = pipfresh("install", "-q", "--python", venv.python, *index_args(index), "demo").ok()
    assert "pipfresh:" not in run.stderr


def test_explicit_no_cache_dir_wins(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    run = pipfresh(
        "install", "--no-cache-dir", "--python", venv.python, *index_args(index), "demo"
    ).ok()
    assert "--no-cache-dir given" in run.stderr
    assert "cache: --no-cache-dir" in run.stderr
    partitions = tmp_path / "pipfresh-cache" / "partitions-v1"
    assert not partitions.exists() or not any(partitions.iterdir())


def test_other_pip_commands_pass_through_with_the_cache(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="26.3")
    out = tmp_path / "dl"
    pipfresh(
        "download", "--python", venv.python, "--no-deps", "-d", out, *index_args(index), "demo"
    ).ok()
    assert [p.name for p in out.iterdir()] == ["demo-1.0-py3-none-any.whl"]
    index.reset_counters()
    install(venv, "demo", index=index).ok()
    assert index.counters().file_bytes == 0  # the download filled the same partition


def test_machine_pip_configuration_does_not_leak(make_venv: MakeVenv, py311: Path) -> None:
    venv = make_venv(py311, pip="26.3")
    run = pipfresh("config", "list", "--python", venv.python).ok()
    assert "find-links" not in run.stdout and "index-url" not in run.stdout
