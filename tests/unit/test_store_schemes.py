"""A venv's install scheme (``store.schemes``) and where a wheel's paths may go."""

from __future__ import annotations

import dataclasses

import pytest

from pipfresh.errors import InstallError
from pipfresh.store import compile as store_compile
from pipfresh.store import plan
from pipfresh.store.schemes import TargetScheme
from pipfresh.target.interpreter import Facts

_FIELDS = {f.name for f in dataclasses.fields(Facts)}


def _facts(**given: object) -> Facts:
    values: dict[str, object] = dict.fromkeys(_FIELDS)
    values.update(
        executable="/v/bin/python",
        prefix="/v",
        base_prefix="/usr",
        version_info=[3, 12, 1, "final", 0],
        purelib="/v/lib/python3.12/site-packages",
        platlib="/v/lib64/python3.12/site-packages",
    )
    values.update(given)
    return Facts.from_json(values)


def test_a_venvs_scheme_is_pips() -> None:
    scheme = TargetScheme.for_venv(_facts())
    assert scheme.paths("Fancy") == {
        "purelib": "/v/lib/python3.12/site-packages",
        "platlib": "/v/lib64/python3.12/site-packages",
        "scripts": "/v/bin",
        "data": "/v",
        "headers": "/v/include/site/python3.12/Fancy",
    }


def test_a_target_without_site_packages_cannot_be_installed_into() -> None:
    with pytest.raises(InstallError, match="site-packages"):
        TargetScheme.for_venv(_facts(purelib=None))


@pytest.mark.parametrize("path", ["/abs", "a/../b", "a/./b", "a//b", "..", "a/"])
def test_a_path_that_could_leave_its_scheme_escapes(path: str) -> None:
    assert plan._escapes(path)


@pytest.mark.parametrize("path", ["a", "pkg/mod.py", "x-1.dist-info/RECORD", "a..b/c"])
def test_a_plain_path_stays(path: str) -> None:
    assert not plan._escapes(path)


def test_bytecode_names_a_file_inside_its_schemes_directory() -> None:
    assert store_compile.installed_name("fancy/cli.py") == "fancy/cli.py"
    assert store_compile.installed_name("x-1.data/purelib/x/y.py") == "x/y.py"
    assert store_compile.installed_name("x-1.data") == "x-1.data"


def test_every_installed_py_file_compiles_but_scripts() -> None:
    assert store_compile.compiles("fancy/cli.py")
    assert store_compile.compiles("x-1.data/purelib/x/y.py")
    assert not store_compile.compiles("x-1.data/scripts/tool.py")
    assert not store_compile.compiles("fancy/data.txt")
