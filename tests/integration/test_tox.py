"""Real tox 4 with pipfresh: the plugin, plain ``install_command``, opting out, ``tox -p``.

Envs install from the loopback index (``PIP_INDEX_URL`` through ``set_env``, which
tox gives to ``install_command``); the partition's usage record shows which
installs went through pipfresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from pipfresh.testing.dists import build_sdist, build_wheel

pytest.importorskip("tox")

PROJECT_PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.4,<5"]
build-backend = "flit_core.buildapi"

[project]
name = "proj"
version = "0.1"
description = "a project tox builds"
dependencies = ["dep"]
"""

SET_ENV = """\
set_env =
    PIP_INDEX_URL = {env:TEST_INDEX_URL}
    PIP_TRUSTED_HOST = 127.0.0.1
"""


def make_project(root: Path, tox_ini: str) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(PROJECT_PYPROJECT)
    (root / "proj").mkdir()
    (root / "proj" / "__init__.py").write_text('"""proj."""\n\n__version__ = "0.1"\n')
    (root / "requirements.txt").write_text("constrained\nbuilt\n")
    (root / "constraints.txt").write_text("constrained==1.0\n")
    (root / "tox.ini").write_text(textwrap.dedent(tox_ini))
    return root


def tox(project: Path, index: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["TEST_INDEX_URL"] = index.index_url
    env["VIRTUALENV_NO_PERIODIC_UPDATE"] = "1"  # virtualenv would update its wheels from PyPI
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "tox", "--root", str(project), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"tox exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def partition_dirs() -> list[Path]:
    root = Path(os.environ["PIPFRESH_CACHE_DIR"]) / "partitions-v1"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def usage_record() -> dict[str, Any]:
    (partition,) = partition_dirs()
    data: dict[str, Any] = json.loads((partition / "pipfresh" / "usage-v1.json").read_text())
    return data


@pytest.fixture
def published(index: Any, dist_dir: Path) -> Any:
    index.publish(
        build_wheel(dist_dir, "dep", "1.0"),
        build_wheel(dist_dir, "dep", "2.0rc1"),
        build_wheel(dist_dir, "constrained", "1.0"),
        build_wheel(dist_dir, "constrained", "1.1"),
        build_sdist(dist_dir, "built", "0.3"),
    )
    return index


CHECK = (
    'python -c "import importlib.metadata as m, proj, built; '
    "v = dict((n, m.version(n)) for n in ('dep', 'constrained', 'built', 'proj')); "
    "print(v); assert v['constrained'] == '1.0' and v['dep'] == '{env:WANT_DEP}'\""
)


def test_plugin_installs_every_shape_through_pipfresh_in_parallel_envs(
    published: Any, tmp_path: Path
) -> None:
    """``tox -p``: an sdist package with --config-settings and --pre deps, and an editable
    package, in two envs sharing one partition; every install is pipfresh's."""
    project = make_project(
        tmp_path / "proj",
        f"""\
        [tox]
        env_list = sdist, editable

        [testenv]
        {SET_ENV.replace(chr(10), chr(10) + "        ")}
        deps =
            -r requirements.txt
            -c constraints.txt
        commands = {CHECK}

        [testenv:sdist]
        package = sdist
        pip_pre = true
        set_env =
            {{[testenv]set_env}}
            WANT_DEP = 2.0rc1

        [testenv:editable]
        package = editable
        set_env =
            {{[testenv]set_env}}
            WANT_DEP = 1.0

        [testenv:.pkg]
        config_settings_build_wheel = pipfresh-test = yes
        """,
    )
    proc = ok(tox(project, published, "-p", "2", "--parallel-no-spinner"))
    assert "sdist: OK" in proc.stdout and "editable: OK" in proc.stdout

    record = usage_record()
    # deps and the package in each env, plus the packaging env's build requirements.
    assert record["runs"] >= 5
    # ... each through the store installer: tox exports PIP_USER=0, which is not --user
    logs = "".join(p.read_text() for p in project.glob(".tox/*/log/*.log"))
    installers = re.findall(r"· installer (\w+)", logs)
    assert len(installers) >= 5 and set(installers) == {"store"}, installers
    used = record["entries"]
    assert any(rel.startswith("wheels/") and "/built-0.3-" in rel for rel in used)
    downloads = published.counters().downloads
    assert downloads.get("dep-2.0rc1-py3-none-any.whl") == 1
    assert downloads.get("constrained-1.1-py3-none-any.whl") is None
    # the editable install is a wheel tox built: it has a .pth pointing at the project
    site = list((project / ".tox" / "editable").glob("lib/python*/site-packages"))
    assert site and any(p.suffix == ".pth" and "proj" in p.name for p in site[0].iterdir())


def test_plain_install_command_reuses_the_cache_on_recreate(published: Any, tmp_path: Path) -> None:
    """Without relying on the plugin: the one-line ``install_command`` recipe from README."""
    project = make_project(
        tmp_path / "proj",
        f"""\
        [tox]
        env_list = py

        [testenv]
        skip_install = true
        {SET_ENV.replace(chr(10), chr(10) + "        ")}
        install_command = pipfresh install {{opts}} {{packages}}
        allowlist_externals = pipfresh
        pass_env = PIPFRESH_*
        deps =
            -r requirements.txt
            -c constraints.txt
        commands = python -c "import constrained, built"
        """,
    )
    ok(tox(project, published))
    assert usage_record()["runs"] == 1
    published.reset_counters()
    ok(tox(project, published, "-r"))  # a new env: everything comes from the partition
    counters = published.counters()
    assert counters.file_requests == 0, counters.downloads
    assert usage_record()["runs"] == 2


def test_plugin_defaults_and_overrides(tmp_path: Path, index: Any) -> None:
    """What ``tox config`` reports: pipfresh by default, user settings win, opt-out works."""
    project = make_project(
        tmp_path / "proj",
        """\
        [tox]
        env_list = default, own, off

        [testenv]
        pass_env = MY_VAR

        [testenv:own]
        install_command = python -m pip install --no-compile {opts} {packages}

        [testenv:off]
        pipfresh = false
        """,
    )
    keys = ["install_command", "pass_env", "allowlist_externals", "pipfresh"]
    proc = ok(tox(project, index, "config", "-e", "default,own,off", "-k", *keys))
    sections: dict[str, str] = {}
    for block in proc.stdout.split("[testenv:")[1:]:
        name, _, body = block.partition("]")
        sections[name] = body
    assert f"install_command = {sys.executable} -m pipfresh install" in sections["default"]
    assert "PIPFRESH_*" in sections["default"] and "MY_VAR" in sections["default"]
    assert "install_command = python -m pip install --no-compile" in sections["own"]
    assert "pipfresh = False" in sections["off"]
    assert "-m pipfresh" not in sections["off"] and "PIPFRESH_*" not in sections["off"]


# -- provisioning --------------------------------------------------------------------

_PROVISION_WHEELS = REPO / ".cache" / "tox-provision-wheels"


def _provision_wheels() -> Path:
    """tox's own closure and pipfresh's build and run requirements, from PyPI once (setup;
    the test body installs offline from this directory)."""
    import importlib.metadata as md

    from conftest import _download_env

    runs = [r for r in md.requires("pipfresh") or [] if "extra ==" not in r]
    wanted = [f"tox=={md.version('tox')}", "flit_core>=3.9,<5", *runs]
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    marker = _PROVISION_WHEELS / f".complete-{digest}"  # a new dependency downloads again
    if marker.exists():
        return _PROVISION_WHEELS
    _PROVISION_WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-q",
         "-d", str(_PROVISION_WHEELS), *wanted],
        check=True, env=_download_env(), timeout=600,
    )  # fmt: skip
    marker.touch()
    return _PROVISION_WHEELS


def test_a_provisioned_tox_installs_through_pipfresh_too(
    index: Any, dist_dir: Path, tmp_path: Path
) -> None:
    """``[tox] requires`` names a plugin the host lacks: tox provisions ``.tox/.tox`` and
    runs the envs from there, with pipfresh in it, so they still install through pipfresh."""
    wheels = _provision_wheels()
    local = tmp_path / "local-wheels"
    local.mkdir()
    build_wheel(local, "needed-plugin", "1.0")
    build_wheel(local, "dep", "1.0")
    project = make_project(
        tmp_path / "proj",
        """\
        [tox]
        requires = needed-plugin
        env_list = py

        [testenv]
        skip_install = true
        deps = dep
        commands = python -c "import dep"
        """,
    )
    env_overrides = {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{wheels} {local}",
    }
    saved = {k: os.environ.get(k) for k in env_overrides}
    os.environ.update(env_overrides)
    try:
        proc = ok(tox(project, index))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert "will run in automatically provisioned tox" in proc.stdout + proc.stderr
    provisioned = project / ".tox" / ".tox"
    assert list(provisioned.glob("lib/python*/site-packages/pipfresh-*.dist-info"))
    # the env was made by the provisioned tox, and its install went through pipfresh
    logs = "".join(p.read_text() for p in project.glob(".tox/py/log/*.log"))
    assert re.findall(r"· installer (\w+)", logs) == ["store"], logs[-3000:]


# -- the package ----------------------------------------------------------------------


def test_the_package_is_built_once_per_env(index: Any, dist_dir: Path, tmp_path: Path) -> None:
    """tox builds the sdist in its packaging env; installing it into the env through the
    store builds its wheel once, as pip would (the backend logs each hook it runs: those
    outside ``.tox`` ran in pip's build environments)."""
    from integration.test_local_builds import ONE_BUILD, calls, logged_project

    index.publish(build_wheel(dist_dir, "dep", "1.0"))
    log = tmp_path / "hooks.log"
    project = logged_project(tmp_path / "proj", log)
    (project / "tox.ini").write_text(
        textwrap.dedent(
            f"""\
            [tox]
            env_list = py

            [testenv]
            {SET_ENV.replace(chr(10), chr(10) + "            ")}
            commands = python -c "import localproj, dep"
            """
        )
    )
    ok(tox(project, index))
    by_pip = [hook for hook, _settings, flit in calls(log) if ".tox" not in Path(flit).parts]
    assert by_pip == ONE_BUILD  # on integrate: the metadata twice, in two build envs
    logs = "".join(p.read_text() for p in project.glob(".tox/py/log/*.log"))
    installers = re.findall(r"· installer (\w+)", logs)
    assert len(installers) == 2 and set(installers) == {"store"}, installers  # dep, the package
