"""The command line as a user meets it: help, version, option placement, dry runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import MakeVenv
from helpers import index_args, installed_version, pipfresh
from pipfresh import __version__
from pipfresh.layout import partition_id
from pipfresh.target.interpreter import probe
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


def test_help_and_version() -> None:
    assert "pipfresh cache" in pipfresh("--help").ok().stdout
    assert pipfresh("--version").ok().stdout.strip() == f"pipfresh {__version__}"
    assert pipfresh().code == 2


def test_python_option_before_the_cache_command(tmp_path: Path) -> None:
    after = pipfresh("cache", "dir", "--python", sys.executable).ok().stdout
    before = pipfresh("--python", sys.executable, "cache", "dir").ok().stdout
    assert before == after
    pid = partition_id(probe(Path(sys.executable), None))  # the interpreter's own partition
    assert after.strip() == str(tmp_path / "pipfresh-cache" / "partitions-v1" / pid)


def test_cache_key_outputs(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("demo==1.0\n")
    lines = pipfresh("cache", "key", cwd=tmp_path).ok().stdout.splitlines()
    assert lines[0].startswith("key=pipfresh-1-") and lines[1].startswith("restore-key=pipfresh-1-")
    data = json.loads(pipfresh("cache", "key", "--json", cwd=tmp_path).ok().stdout)
    assert data["files"] == ["requirements.txt"] and data["key"] == lines[0].split("=", 1)[1]


def test_install_help_is_pips_and_has_no_summary() -> None:
    run = pipfresh("install", "--help").ok()
    assert "--requirement" in run.stdout and "pipfresh:" not in run.stderr


def test_dry_run_says_would_install(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, interpreters: dict[str, Path]
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(interpreters.get("3.11"), pip="26.3")
    run = pipfresh("install", "--dry-run", "--python", venv.python, *index_args(index), "demo").ok()
    assert "would install 1" in run.stderr
    assert installed_version(venv.python, "demo") is None
