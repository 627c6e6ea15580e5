"""``pipfresh install`` through the store (PIPFRESH_INSTALLER=store): pip's end state,
pip's freshness, pip's decisions; plain pip for what the store does not handle."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv, pip_wheel
from helpers import index_args, install, installed_version, pipfresh, store_env
from integration.test_fastpath_parity import (
    EndState,
    assert_behaves,
    assert_records_valid,
    assert_same_end_state,
    fancy_wheels,
    tree,
)
from pipfresh.pip.args import split
from pipfresh.store.fastpath import decide, unsupported_option
from pipfresh.store.obtain import fetch_options
from pipfresh.target.interpreter import Target, probe
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex


def same_path_venv(make_venv: Any, python: Path, venv: Any, pip: str) -> Any:
    shutil.rmtree(venv.path)
    return make_venv(python, pip=pip, name=venv.path.name)


@pytest.mark.parametrize("pip_version", ["23.0.1", "26.3"])
def test_store_path_ends_where_pip_ends(
    pip_version: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    """Cold and warm through the store, each compared with pipfresh running plain pip."""
    index.publish(
        *fancy_wheels(dist_dir, py311),
        build_wheel(dist_dir, "app", "1.0", requires=["fancy", "built"]),
        build_sdist(dist_dir, "built", "0.3"),
    )
    summary = tmp_path / "s.json"
    venv = make_venv(py311, pip=pip_version, name="env")
    args = ["install", "--python", venv.python, *index_args(index), "app"]
    pipfresh(*args, env=store_env(PIPFRESH_INSTALLER="pip"), summary=summary).ok()  # same cache
    by_pip = EndState.of(venv)

    rounds = ("cold", "warm") if pip_version == "26.3" else ("cold",)  # time budget
    for round_ in rounds:
        venv = same_path_venv(make_venv, py311, venv, pip_version)
        index.reset_counters()
        run = pipfresh(*args, env=store_env(), summary=summary).ok()
        assert run.summary is not None
        assert run.summary["installer"] == "store", run.summary
        added = 6 if round_ == "cold" else 0
        # Warm: the venv just deleted held links to every entry; an unlink changes the
        # stored inodes' ctime, as an edit would, so their content is hashed again.
        again = " (6 re-verified by hash)" if round_ == "warm" else ""
        reason = f"{6 - added} from the store{again}, {added} added"
        assert run.summary["installer_reason"] == reason
        assert "installer store" in run.stderr and "Successfully installed app-1.0" in run.stdout
        assert_same_end_state(by_pip, venv)
        counters = index.counters()
        # Still fresh: every index page was asked for again; nothing downloaded twice.
        assert counters.index_requests > 0, counters
        assert counters.file_bytes == 0, counters
    assert assert_records_valid(venv) > 20
    assert_behaves(venv)


def test_a_version_published_a_second_ago_is_installed(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    first = make_venv(py311)
    install(first, "demo", env=store_env(), index=index).ok()
    index.publish(build_wheel(dist_dir, "demo", "1.1"))
    second = make_venv(py311)
    run = install(
        second,
        "demo",
        env=store_env(),
        summary=tmp_path / "s.json",
        index=index,
    ).ok()
    assert installed_version(second.python, "demo") == "1.1"
    assert run.summary is not None and run.summary["installer"] == "store"
    assert run.summary["index_changed"] >= 1


def test_upgrade_uninstalls_the_replaced_version_first(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    old = {"demo/__init__.py": "V = 1\n", "demo/gone.py": "GONE = True\n"}
    index.publish(build_wheel(dist_dir, "demo", "1.0", modules=old))
    venv = make_venv(py311)
    common = ["install", "--python", venv.python, *index_args(index)]
    pipfresh(*common, "demo", env=store_env()).ok()
    site = Path(probe(venv.python, None).purelib or "")
    assert (site / "demo" / "gone.py").exists()

    index.publish(build_wheel(dist_dir, "demo", "2.0", modules={"demo/__init__.py": "V = 2\n"}))
    already = pipfresh(*common, "demo", env=store_env(), summary=tmp_path / "s.json").ok()
    assert already.summary is not None and already.summary["installed"] == 0
    assert installed_version(venv.python, "demo") == "1.0"  # pip's rule: satisfied stays

    pipfresh(*common, "--upgrade", "demo", env=store_env()).ok()
    assert installed_version(venv.python, "demo") == "2.0"
    assert not (site / "demo" / "gone.py").exists()
    assert not list((site / "demo" / "__pycache__").glob("gone.*"))
    assert [p.name for p in site.glob("demo-*.dist-info")] == ["demo-2.0.dist-info"]
    venv.pip("check")


def test_direct_wheel_file_gets_pips_direct_url(
    dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(dist_dir, "direct", "1.0")
    venv = make_venv(py311, name="env")
    pipfresh("install", "--python", venv.python, "--no-index", wheel).ok()
    expected = EndState.of(venv)
    venv = same_path_venv(make_venv, py311, venv, "26.3")
    run = pipfresh(
        "install", "--python", venv.python, "--no-index", wheel,
        env=store_env(), summary=tmp_path / "s.json",
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "store"
    assert_same_end_state(expected, venv)
    assert '"archive_info"' in expected.metadata["direct"]["direct_url"]


def _project(root: Path, name: str) -> Path:
    """A local source tree (flit), for directory and editable requirements."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.2,<5"]\nbuild-backend = "flit_core.buildapi"\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\ndescription = "local"\n'
    )
    (root / f"{name}.py").write_text('"""local."""\n')
    return root


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["-e", "{project}"], "editable installs"),
        (["--target", "{tmp}/t", "{project}"], "--target"),
        # a directory on the command line is built for the store (test_local_builds.py)
        (["-r", "{tmp}/reqs.txt"], "localproj comes from a local directory"),
    ],
)
def test_outside_the_supported_set_plain_pip_runs(
    extra: list[str],
    reason: str,
    index: PackageIndex,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "proj", "localproj")
    (tmp_path / "reqs.txt").write_text(f"{project}\n")
    venv = make_venv(py311)
    args = [a.format(project=project, tmp=tmp_path) for a in extra]
    run = install(
        venv, *args,
        env=store_env(), summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None
    assert run.summary["installer"] == "pip"
    assert reason in run.summary["installer_reason"]
    assert f"installer pip ({run.summary['installer_reason']})" in run.stderr
    if "--target" in extra:
        assert (tmp_path / "t" / "localproj.py").exists()
    else:
        assert installed_version(venv.python, "localproj") == "0.1"


def test_the_store_is_the_default_and_plain_pip_a_choice(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311)
    args = ["install", "--python", venv.python, *index_args(index), "demo"]
    run = pipfresh(*args, summary=tmp_path / "s.json").ok()
    assert run.summary is not None
    assert (run.summary["installer"], run.summary["installer_reason"]) == (
        "store",
        "0 from the store, 1 added",
    )
    chosen = pipfresh(
        *args,
        "--force-reinstall",
        env=store_env(PIPFRESH_INSTALLER="pip"),
        summary=tmp_path / "s.json",
    ).ok()
    assert chosen.summary is not None
    assert (chosen.summary["installer"], chosen.summary["installer_reason"]) == (
        "pip",
        "PIPFRESH_INSTALLER=pip",
    )
    # Set in pip's environment or configuration, an option the store lacks means pip,
    # read as pip reads it: ``no-compile`` is a store_false flag, so pip stores the
    # boolean itself (``no-compile = true`` compiles; checked against pip 26.3), and tox's
    # ``PIP_USER=0`` is not --user.
    config = tmp_path / "pip.conf"
    cases = [
        ({"PIP_CONFIG_FILE": config}, "[install]\nno-compile = false\n",
         "no-compile in pip's configuration (not supported by the store installer)"),
        ({"PIP_CONFIG_FILE": config}, "[install]\nno-compile = true\nuser = off\n", None),
        ({"PIP_USER": "0", "PIP_IGNORE_INSTALLED": "no", "PIP_TARGET": ""}, "", None),
        # pip itself then refuses (no user site in a venv): so does pipfresh, through pip
        ({"PIP_USER": "yes"}, "", "PIP_USER (not supported by the store installer)"),
        ({"PIP_DRY_RUN": "1"}, "", "PIP_DRY_RUN (not supported by the store installer)"),
    ]  # fmt: skip
    for extra, text, reason in cases:
        config.write_text(text)
        env = {**os.environ, **{k: str(v) for k, v in extra.items()}}
        run = pipfresh(*args, "--force-reinstall", env=env, summary=tmp_path / "s.json")
        assert run.summary is not None
        if reason is None:
            assert (run.code, run.summary["installer"]) == (0, "store"), (extra, text, run)
        else:
            assert run.summary["installer_reason"] == reason, (extra, text)
            assert run.code == (1 if "USER" in reason else 0), run
    bad = pipfresh(
        "install", "--python", venv.python, "demo", env=store_env(PIPFRESH_INSTALLER="x")
    )
    assert bad.code == 2 and "PIPFRESH_INSTALLER=x" in bad.stderr


def test_decisions_for_targets_and_options(py311: Path, tmp_path: Path) -> None:
    """The choice itself, on a real probe of a base interpreter (not a venv)."""
    facts = probe(py311, None)
    target = Target(py311, "--python", facts)
    env = {"PIPFRESH_INSTALLER": "store"}
    decision = decide("install", split(["demo"]), target, None, env)
    assert decision.installer == "pip"
    assert unsupported_option(["--edit", "x"]) == "editable installs"  # optparse prefix
    assert unsupported_option(["-qe", "x"]) == "editable installs"
    assert unsupported_option(["-r", "-e.txt"]) is None  # a value, not an option
    assert unsupported_option(["--pre", "--prefer-binary", "-U", "x"]) is None
    assert unsupported_option(["--user"]) == "--user"
    assert unsupported_option(["--prefix=/x"]) == "--prefix"
    assert fetch_options(["-i", "U", "--trusted-host=h", "-U", "x", "--no-index", "-fD"]) == [
        "-i",
        "U",
        "--trusted-host=h",
        "--no-index",
        "-fD",
    ]


def test_store_survives_a_partial_add(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """A leftover half-added entry (killed run) is never used; the next run adds it again."""
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311)
    cmd = ["install", "--python", venv.python, *index_args(index), "demo"]
    pipfresh(*cmd, env=store_env()).ok()
    stores = list(Path(os.environ["PIPFRESH_CACHE_DIR"]).glob("partitions-v1/*/pipfresh/store-v1"))
    (entry,) = [p for p in stores[0].iterdir() if not p.name.startswith(".")]
    half = stores[0] / f".tmp-{entry.name[:16]}-killed"
    entry.rename(half)
    (half / "manifest.json").unlink()  # as if killed before the manifest was written
    second = make_venv(py311)
    run = install(
        second, "demo",
        env=store_env(), summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer_reason"].endswith("1 added")
    assert installed_version(second.python, "demo") == "1.0"
    assert tree(second)


def test_pip_itself_is_installed_by_pip_and_the_rest_by_the_store(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """pip writes its own launchers (pip3.11) for pip: one ``pip install --no-deps``,
    not a whole second install through pip."""
    index.publish(build_wheel(dist_dir, "app", "1.0"), pip_wheel("26.3"))
    venv = make_venv(py311, pip="26.1.2")
    run = install(
        venv,
        "app",
        "pip==26.3",
        env=store_env(),
        summary=tmp_path / "s.json",
        index=index,
    ).ok()
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert run.summary["installer_reason"] == "0 from the store, 1 added"
    assert installed_version(venv.python, "pip") == "26.3"
    assert installed_version(venv.python, "app") == "1.0"
    assert (venv.bin / "pip3.11").exists() and (venv.bin / "pip3").exists()
    site = Path(probe(venv.python, None).purelib or "")
    assert not list(site.glob("pip-26.1.2.dist-info")), "the old pip is uninstalled"
    assert not (site / "pip-26.3.dist-info" / "direct_url.json").exists()


def test_a_wheel_shipping_a_tmp_file_stays_in_the_store(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """Leftover cleanup (``*.tmp`` files of unfinished writes) never reaches into the store."""
    modules = {"odd/__init__.py": "", "odd/cache.tmp": "shipped on purpose\n"}
    index.publish(build_wheel(dist_dir, "odd", "1.0", modules=modules))
    for added in (1, 0):
        venv = make_venv(py311)
        run = install(
            venv, "odd",
            summary=tmp_path / "s.json", index=index,
        ).ok()  # fmt: skip
        assert run.summary is not None
        assert run.summary["installer_reason"] == f"{1 - added} from the store, {added} added"
        site = Path(probe(venv.python, None).purelib or "")
        assert (site / "odd" / "cache.tmp").read_text() == "shipped on purpose\n"


def test_config_settings_on_a_pip_too_old_for_them_per_requirement_run_plain_pip(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv(py311, pip="23.0.1")
    run = install(
        venv, "--config-settings", "flavour=red", "demo",
        summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "pip", run.summary
    assert run.summary["installer_reason"] == "-C needs pip >= 23.1 to build for the store"
    assert installed_version(venv.python, "demo") == "1.0"


def test_the_summary_says_where_the_time_went(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """Cold, the run asks ahead, resolves, obtains, compiles and links; warm, it obtains
    nothing; plain pip is one phase. No second is counted twice."""
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["dep"]), build_wheel(dist_dir, "dep", "1.0")
    )
    summary = tmp_path / "s.json"

    def phases(run: Any) -> dict[str, float]:
        assert run.summary is not None
        took: dict[str, float] = run.summary["phases"]
        assert all(seconds >= 0 for seconds in took.values()), took
        assert sum(took.values()) <= run.summary["elapsed"] + 0.01, run.summary
        return took

    cold = install(make_venv(), "app", index=index, env=store_env(), summary=summary).ok()
    everything = {"start", "cache", "prefetch", "resolve", "check", "obtain", "compile", "link"}
    assert everything | {"record"} == set(phases(cold)), cold.summary
    warm = install(make_venv(), "app", index=index, env=store_env(), summary=summary).ok()
    assert set(phases(warm)) == everything - {"prefetch", "obtain", "compile"} | {"record"}
    assert "s (start " in warm.stderr, warm.stderr  # the line shows those over 10 ms
    by_pip = store_env(PIPFRESH_INSTALLER="pip")
    plain = install(make_venv(), "app", index=index, env=by_pip, summary=summary).ok()
    assert set(phases(plain)) == {"start", "cache", "pip", "record"}
