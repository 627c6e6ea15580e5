"""A real nox session installing through pipfresh: README's recipe, run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipfresh.testing.dists import build_sdist, build_wheel

pytest.importorskip("nox")

# README's recipe ("CI, local installs and tox"), word for word but for the check.
NOXFILE = """\
import nox


@nox.session
def tests(session: nox.Session) -> None:
    session.run_install("pipfresh", "install", "-r", "requirements.txt", external=True)
    session.run("python", "-c", "import app, lib, native; print(lib.__version__)")
"""


def nox(project: Path, index: Any) -> str:
    """Run nox; its output and the commands' (nox shows both on stdout with --verbose)."""
    env = dict(os.environ)
    env["PIP_INDEX_URL"] = index.index_url  # nox passes the environment on unchanged
    env["PIP_TRUSTED_HOST"] = index.host
    env["VIRTUALENV_NO_PERIODIC_UPDATE"] = "1"  # virtualenv would update its wheels from PyPI
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", "--verbose", "-f", str(project / "noxfile.py")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"nox exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_nox_session_installs_through_pipfresh_and_reuses_the_cache(
    index: Any, dist_dir: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_sdist(dist_dir, "native", "0.1"),
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "noxfile.py").write_text(textwrap.dedent(NOXFILE))
    (project / "requirements.txt").write_text("app\nnative\n")

    first = nox(project, index)
    assert "pipfresh: installed 3 " in first  # the summary line, from inside the session
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    (partition,) = (root / "partitions-v1").iterdir()
    record = json.loads((partition / "pipfresh" / "usage-v1.json").read_text())
    assert record["runs"] == 1
    venv_python = project / ".nox" / "tests" / "bin" / "python"
    assert str(venv_python) in first  # the session's venv was the target (VIRTUAL_ENV)

    index.reset_counters()
    second = nox(project, index)  # nox makes a new venv: everything from the partition
    assert index.counters().file_requests == 0, index.counters().downloads
    assert "built 0, 1 built earlier" in second
