"""Partition ids from real interpreters and from the facts of builds we lack."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from pipfresh.errors import CacheRootError, InterpreterError
from pipfresh.layout import CacheRoot, abi_tag, partition_id, platform_tag
from pipfresh.target import interpreter

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


def facts_of(python: Path) -> interpreter.Facts:
    return interpreter.probe(python, None)


def test_own_interpreter_id_names_version_abi_and_platform() -> None:
    facts = facts_of(Path(sys.executable))
    pid = partition_id(facts)
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert pid.startswith(f"{tag}-{tag}")
    assert SAFE.match(pid)
    if sys.platform.startswith("linux"):
        assert re.search(r"-(manylinux|musllinux)_\d+_\d+_\w+$", pid), pid


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"])
def test_every_installed_python_gets_its_own_partition(
    version: str, interpreters: dict[str, Path]
) -> None:
    if version not in interpreters:
        pytest.skip(f"Python {version} is not installed here")
    facts = facts_of(interpreters[version])
    major, minor = version.split(".")
    assert partition_id(facts).startswith(f"cp{major}{minor}-cp{major}{minor}-")


def test_311_and_312_differ(interpreters: dict[str, Path]) -> None:
    if not {"3.11", "3.12"} <= interpreters.keys():
        pytest.skip("needs Python 3.11 and 3.12")
    ids = {partition_id(facts_of(interpreters[v])) for v in ("3.11", "3.12")}
    assert len(ids) == 2


def _variant(**changes: Any) -> interpreter.Facts:
    return dataclasses.replace(facts_of(Path(sys.executable)), **changes)


def test_free_threaded_and_debug_builds_differ_from_the_default() -> None:
    base = _variant(gil_disabled=False, debug=False)
    assert abi_tag(_variant(gil_disabled=True, debug=False)) == abi_tag(base) + "t"
    assert abi_tag(_variant(gil_disabled=False, debug=True)) == abi_tag(base) + "d"
    assert len({partition_id(base), partition_id(_variant(gil_disabled=True))}) == 2


def test_prerelease_carries_its_build_and_patch_releases_share() -> None:
    final_a = _variant(version_info=(3, 14, 0, "final", 0), version="3.14.0 (main) [GCC]")
    final_b = _variant(version_info=(3, 14, 2, "final", 0), version="3.14.2 (main) [GCC]")
    alpha = _variant(version_info=(3, 14, 0, "alpha", 3), version="3.14.0a3 (main, Jan 1) [GCC]")
    alpha_rebuilt = _variant(
        version_info=(3, 14, 0, "alpha", 3), version="3.14.0a3 (main, Feb 2) [GCC]"
    )
    assert partition_id(final_a) == partition_id(final_b)
    assert "_0a3_" in partition_id(alpha)
    assert partition_id(alpha) != partition_id(alpha_rebuilt)
    assert SAFE.match(partition_id(alpha))


def test_platform_and_libc() -> None:
    glibc = _variant(
        sys_platform="linux",
        sysconfig_platform="linux-aarch64",
        libc="glibc",
        libc_version="2.31",
        pointer_bits=64,
    )
    musl = _variant(
        sys_platform="linux",
        sysconfig_platform="linux-x86_64",
        libc="musl",
        libc_version="1.2.4",
        pointer_bits=64,
    )
    mac = _variant(
        sys_platform="darwin", sysconfig_platform="macosx-11.0-arm64", libc=None, libc_version=None
    )
    win = _variant(
        sys_platform="win32", sysconfig_platform="win-amd64", libc=None, libc_version=None
    )
    assert platform_tag(glibc) == "manylinux_2_31_aarch64"
    assert platform_tag(musl) == "musllinux_1_2_x86_64"
    assert platform_tag(mac) == "macosx_11_0_arm64"
    assert platform_tag(win) == "win_amd64"


def test_pypy_abi_comes_from_soabi() -> None:
    pypy = _variant(
        implementation="pypy",
        soabi="pypy310-pp73-x86_64-linux-gnu",
        version_info=(3, 10, 14, "final", 0),
    )
    assert partition_id(pypy).startswith("pp310-pypy310_pp73_x86_64_linux_gnu-")


def test_probe_is_cached_and_invalidated_by_a_new_pip(tmp_path: Path, make_venv: MakeVenv) -> None:
    venv = make_venv(pip=None)
    cache = tmp_path / "probes"
    first = interpreter.probe(venv.python, cache)
    assert first.pip_version is None and first.is_venv
    assert len(list(cache.iterdir())) == 1
    again = interpreter.probe(venv.python, cache)
    assert again == first
    pipped = make_venv(pip="24.3.1")
    assert interpreter.probe(pipped.python, cache).pip_version == "24.3.1"


def test_unknown_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InterpreterError, match="no such interpreter"):
        interpreter.locate(str(tmp_path / "nope" / "python"), {})
    not_python = tmp_path / "python"
    not_python.write_text("#!/bin/sh\necho hello\nexit 3\n")
    not_python.chmod(0o755)
    with pytest.raises(InterpreterError, match="not a usable Python"):
        interpreter.probe(not_python, None)


def test_target_order_python_then_virtual_env_then_self(make_venv: MakeVenv) -> None:
    venv = make_venv(pip=None)
    assert interpreter.locate(str(venv.path), {}) == (venv.python, "--python")
    assert interpreter.locate(None, {"VIRTUAL_ENV": str(venv.path)}) == (venv.python, "VIRTUAL_ENV")
    assert interpreter.locate(None, {})[1] == "pipfresh's interpreter"


def test_root_refuses_files_and_foreign_directories(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CacheRootError, match="not a directory"):
        CacheRoot(a_file).ensure()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CacheRootError, match="did not create"):
        CacheRoot(foreign).ensure()
    with pytest.raises(CacheRootError, match="not a pipfresh cache root"):
        CacheRoot(foreign).require_marked()
    fresh = CacheRoot(tmp_path / "new").ensure()
    assert fresh.is_marked() and (fresh.path / "CACHEDIR.TAG").exists()
    fresh.require_marked()
