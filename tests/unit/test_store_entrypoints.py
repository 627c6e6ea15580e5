"""Entry points and launchers: the names installer parses, the wrappers pip skips, pip's text."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from pipfresh.store import destination, scripts
from pipfresh.store.entries import Entry
from pipfresh.store.source import StoreSource
from pipfresh.store.verify import Stat

_ENTRY_POINTS = """\
[console_scripts]
fancy = fancy.cli:main
Fancy-Tool = fancy.tool:App.run

[gui_scripts]
fancy-gui = fancy.gui:main

[fancy.plugins]
ignored = fancy.plugin
"""


def _source(tmp_path: Path, dist_info: dict[str, str]) -> StoreSource:
    files = {}
    for name, text in dist_info.items():
        rel = f"fancy-1.0.dist-info/{name}"
        path = tmp_path / "tree" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files[rel] = Stat(len(text), 0, 0o444, "")
    entry = Entry(tmp_path, "0" * 64, "fancy-1.0-py3-none-any.whl", files, {})
    return StoreSource(entry)


def test_script_names_are_the_console_and_gui_ones_case_kept(tmp_path: Path) -> None:
    source = _source(tmp_path, {"METADATA": "", "entry_points.txt": _ENTRY_POINTS})
    assert destination.entry_point_names(source) == {"fancy", "Fancy-Tool", "fancy-gui"}


def test_a_wheel_without_entry_points_has_no_script_names(tmp_path: Path) -> None:
    assert destination.entry_point_names(_source(tmp_path, {"METADATA": ""})) == set()


def test_setuptools_wrappers_of_entry_points_are_recognised() -> None:
    names = {"fancy"}
    assert destination.is_entry_point_wrapper("fancy", names)
    assert destination.is_entry_point_wrapper("fancy.exe", names)
    assert destination.is_entry_point_wrapper("fancy-script.py", names)
    assert destination.is_entry_point_wrapper("fancy.pya", names)
    assert not destination.is_entry_point_wrapper("fancy-helper", names)


def test_the_launcher_is_pips_for_each_pip() -> None:
    assert "removesuffix('.exe')" in scripts.script_template(Version("26.0"))
    assert "'__main__':\n    from %(module)s" in scripts.script_template(Version("25.1"))
    data = scripts.launcher(
        scripts.script_template(Version("24.0")), "/v/bin/python", "a.b", "C.run"
    )
    assert data.startswith(b"#!/v/bin/python\n# -*- coding: utf-8 -*-\n")
    assert b"from a.b import C\n" in data
    assert data.endswith(b"    sys.exit(C.run())\n")


def test_a_spaced_interpreter_gets_the_sh_trampoline() -> None:
    assert scripts.shebang("/my venv/bin/python") == (
        b"#!/bin/sh\n'''exec' \"/my venv/bin/python\" \"$0\" \"$@\"\n' '''\n"
    )
