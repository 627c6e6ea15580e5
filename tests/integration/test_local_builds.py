"""A local project (``pipfresh install ./proj``, a local sdist as tox installs it) is built
once per run on the store path, as pip builds it, and ends as pip leaves it.

The project's in-tree backend (``backend-path``, flit_core underneath) logs every hook
pip calls, with the config settings and the flit_core it ran with, so a test sees how
many build environments, metadata preparations and builds a run cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import flit_core_wheel
from helpers import index_args, pipfresh, store_env
from integration.test_fastpath import same_path_venv
from integration.test_fastpath_parity import EndState, assert_same_end_state
from pipfresh.testing.dists import build_wheel

_BACKEND = '''"""flit_core, logging each hook call to {log!r}."""
import json
import flit_core
from flit_core import buildapi as _flit


def _logged(name):
    hook = getattr(_flit, name)

    def call(*args, **kwargs):
        settings = kwargs.get("config_settings") or (args[1] if len(args) > 1 else None)
        if {fail!r} == name:
            raise RuntimeError("logbackend: this build is meant to fail")
        with open({log!r}, "a") as fp:
            fp.write(json.dumps([name, settings or {{}}, flit_core.__file__]) + "\\n")
        return hook(*args, **kwargs)

    return call


for _name in ("get_requires_for_build_wheel", "prepare_metadata_for_build_wheel",
              "build_wheel", "get_requires_for_build_sdist", "build_sdist"):
    globals()[_name] = _logged(_name)
'''


def logged_project(
    root: Path, log: Path, *, fail: str = "", dependency: str = "dep", python: str = ">=3"
) -> Path:
    """``localproj`` 0.1 (depends on ``dependency``, requires ``python``), whose backend
    logs each hook to ``log`` and raises in the hook named ``fail``."""
    (root / "_backend").mkdir(parents=True)
    (root / "_backend" / "logbackend.py").write_text(_BACKEND.format(log=str(log), fail=fail))
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.2,<5"]\n'
        'build-backend = "logbackend"\nbackend-path = ["_backend"]\n'
        '[project]\nname = "localproj"\nversion = "0.1"\ndescription = "local"\n'
        f'dependencies = ["{dependency}"]\nrequires-python = "{python}"\n'
        '[tool.flit.sdist]\ninclude = ["_backend/"]\n'
    )
    (root / "localproj.py").write_text('"""local."""\n__version__ = "0.1"\n')
    return root


def logged_sdist(project: Path, out: Path) -> Path:
    """The project's sdist, built by its backend (the log is left as it was)."""
    log_text = _log_of(project).read_text() if _log_of(project).exists() else None
    code = "import sys; sys.path.insert(0, '_backend'); import logbackend; logbackend.build_sdist(sys.argv[1])"
    env = {"PYTHONPATH": str(flit_core_wheel()), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=project, env=env, check=True)
    if log_text is None:
        _log_of(project).unlink()
    else:
        _log_of(project).write_text(log_text)
    (sdist,) = out.glob("localproj-*.tar.gz")
    return sdist


def _log_of(project: Path) -> Path:
    text = (project / "_backend" / "logbackend.py").read_text()
    return Path(text.split("logging each hook call to '", 1)[1].split("'", 1)[0])


def hooks(log: Path) -> list[str]:
    """The hooks called so far, in order."""
    return [json.loads(line)[0] for line in log.read_text().splitlines()] if log.exists() else []


def calls(log: Path) -> list[list[Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# What plain pip calls to install a project from its directory or an sdist: one build
# environment (its requirements), the metadata, the wheel.
ONE_BUILD = ["get_requires_for_build_wheel", "prepare_metadata_for_build_wheel", "build_wheel"]


@pytest.fixture
def dep_index(index: Any, dist_dir: Path) -> Any:
    index.publish(build_wheel(dist_dir, "dep", "1.0"))
    return index


@pytest.mark.parametrize("pip_version", ["23.0.1", "26.3"])
def test_a_directory_is_built_once_and_ends_as_pip_leaves_it(
    pip_version: str, dep_index: Any, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    project = logged_project(tmp_path / "proj", log)
    summary = tmp_path / "s.json"
    venv = make_venv(py311, pip=pip_version, name="env")
    args = ["install", "--python", venv.python, *index_args(dep_index), project]
    pipfresh(*args, env=store_env(PIPFRESH_INSTALLER="pip")).ok()
    assert hooks(log) == ONE_BUILD  # plain pip
    by_pip = EndState.of(venv)
    assert '"dir_info": {}' in by_pip.metadata["localproj"]["direct_url"]

    log.unlink()
    venv = same_path_venv(make_venv, py311, venv, pip_version)
    run = pipfresh(*args, env=store_env(), summary=summary).ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert hooks(log) == ONE_BUILD  # on integrate: metadata twice, in two build envs
    assert_same_end_state(by_pip, venv)
    # pip's report names the directory, as pip's own does (the user's --report, the summary)
    assert run.summary["local"] == 1 and run.summary["installed"] == 2

    # Installed at the same version: pip reinstalls a local project, built afresh (an
    # edit is not hidden by an earlier build), once.
    (project / "localproj.py").write_text('"""local."""\n__version__ = "0.1"\nEDITED = True\n')
    log.unlink()
    run = pipfresh(*args, env=store_env(), summary=summary).ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert run.summary["installer_reason"] == "0 from the store, 1 added", (run.stdout, run.summary)
    assert hooks(log) == ONE_BUILD
    venv.run("-c", "import localproj; assert localproj.EDITED")
    assert EndState.of(venv).metadata == by_pip.metadata  # direct_url.json, REQUESTED...
    assert "is already installed with the same version" not in run.stdout

    # Unchanged, it is still built (as pip would); the same bytes link the stored entry.
    log.unlink()
    run = pipfresh(*args, env=store_env(), summary=summary).ok()
    assert run.summary is not None
    assert (run.summary["installer_reason"], hooks(log)) == ("1 from the store, 0 added", ONE_BUILD)


@pytest.mark.parametrize("pip_version", ["23.0.1", "26.3"])
def test_a_local_sdist_as_tox_installs_it_is_built_once(
    pip_version: str, dep_index: Any, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """tox's package step: ``--force-reinstall --no-deps <sdist>``."""
    log = tmp_path / "hooks.log"
    sdist = logged_sdist(logged_project(tmp_path / "proj", log), tmp_path / "sdists")
    venv = make_venv(py311, pip=pip_version, name="env")
    args = ["install", "--python", venv.python, *index_args(dep_index)]
    args += ["--force-reinstall", "--no-deps", sdist]
    pipfresh(*args, env=store_env(PIPFRESH_INSTALLER="pip")).ok()
    assert hooks(log) == ONE_BUILD
    by_pip = EndState.of(venv)
    assert '"archive_info"' in by_pip.metadata["localproj"]["direct_url"]

    log.unlink()
    venv = same_path_venv(make_venv, py311, venv, pip_version)
    run = pipfresh(*args, env=store_env(), summary=tmp_path / "s.json").ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert hooks(log) == ONE_BUILD  # on integrate: twice the metadata, in two build envs
    assert_same_end_state(by_pip, venv)

    # The same sdist again (a file with a hash, unlike a directory): its wheel is reused.
    log.unlink()
    venv = same_path_venv(make_venv, py311, venv, pip_version)
    run = pipfresh(*args, env=store_env(), summary=tmp_path / "s.json").ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert hooks(log) == [] and run.summary["installer_reason"].endswith(", 0 added")
    assert_same_end_state(by_pip, venv)


def test_build_options_reach_the_local_build(
    dep_index: Any, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    """``-C``, ``--no-build-isolation`` and ``--ignore-requires-python`` hold for the
    build as in ``pip install``."""
    log = tmp_path / "hooks.log"
    project = logged_project(tmp_path / "proj", log, python="<3")
    venv = make_venv(py311, name="env")
    venv.pip("install", "--no-index", "--no-deps", flit_core_wheel())
    args = ["install", "--python", venv.python, *index_args(dep_index), project]
    run = pipfresh(
        *args, "--no-build-isolation", "-C", "flavour=red", "--ignore-requires-python",
        env=store_env(),
        summary=tmp_path / "s.json",
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    builds = [c for c in calls(log) if c[0] == "build_wheel"]
    assert len(builds) == 1
    _hook, settings, flit = builds[0]
    assert settings == {"flavour": "red"}
    assert flit.startswith(str(venv.path)), flit  # the target's flit_core: no isolation


@pytest.mark.parametrize(
    ("fail", "dependency", "says"),
    [
        ("build_wheel", "dep", "this build is meant to fail"),
        ("", "dep>=5", "No matching distribution found for dep>=5"),
    ],
)
def test_a_failed_build_gives_pips_message_and_status(
    fail: str, dependency: str, says: str, dep_index: Any, make_venv: Any, py311: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The build fails, or the built wheel does not resolve: pip's own words and status."""
    log = tmp_path / "hooks.log"
    project = logged_project(tmp_path / "proj", log, fail=fail, dependency=dependency)
    venv = make_venv(py311, name="env")
    args = ["install", "--python", venv.python, *index_args(dep_index), project]
    by_pip = pipfresh(*args, env=store_env(PIPFRESH_INSTALLER="pip"))
    run = pipfresh(*args, env=store_env(), summary=tmp_path / "s.json")
    assert by_pip.code == run.code != 0

    def errors(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("ERROR", "error:"))]

    assert errors(run.stderr) == errors(by_pip.stderr) != [], run.stderr
    assert run.stderr.count(says) == by_pip.stderr.count(says) > 0, run.stderr
    assert "pipfresh-local-" not in run.stdout + run.stderr
    assert run.summary is not None and run.summary["installer"] == "pip"
