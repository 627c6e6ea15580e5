"""The store's adding: wheels taken from pip's HTTP cache only when their sha256 matches,
nothing published before ``finish``, bytecode for every module, plans replayed alike."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from pipfresh.layout import STORE_LAYOUT
from pipfresh.pip import httpcache
from pipfresh.pip.report import Item
from pipfresh.store import install
from pipfresh.store.entries import Compiler, Entry, Store
from pipfresh.store.obtain import _take_cached
from pipfresh.store.wheelcheck import UnsupportedWheel
from pipfresh.testing.dists import build_wheel

URL = "https://files.example.invalid/packages/demo-1.0-py3-none-any.whl"


def _item(sha256: str) -> Item:
    return Item(
        name="demo",
        version="1.0",
        url=URL,
        sha256=sha256,
        is_wheel=True,
        requested=True,
        direct_url=None,
    )


def test_a_cached_body_is_taken_only_when_its_sha256_matches(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dists", "demo", "1.0", modules={"demo/__init__.py": "X = 1\n"})
    other = build_wheel(tmp_path / "other", "demo", "1.0", modules={"demo/__init__.py": "X = 2\n"})
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    http_dir = tmp_path / "pip" / "http-v2"
    meta = httpcache.entry_path(http_dir, URL)
    body = meta.with_name(meta.name + ".body")
    body.parent.mkdir(parents=True)
    body.write_bytes(other.read_bytes())  # what the URL served before: not the report's file
    store = Store(tmp_path / STORE_LAYOUT)
    rejected: dict[str, tuple[int, int, int]] = {}
    with store.adding(Compiler(Path(sys.executable))) as adding:
        assert not _take_cached([_item(sha)], http_dir, adding, rejected)
        assert sha in rejected and sha not in adding
        os.replace(wheel, body)  # pip replaces the body whole
        assert _take_cached([_item(sha)], http_dir, adding, rejected)
        entry = adding.finish()[sha]
    assert store.lookup(sha) is not None and entry.intact()
    assert Path(entry.file("demo/__init__.py")).read_text() == "X = 1\n"
    assert entry.pyc["demo/__init__.py"] in entry.files  # compiled with the module


def test_an_unfinished_add_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    wheels = [build_wheel(tmp_path / "dists", f"part{i}", "1.0") for i in range(3)]
    store = Store(tmp_path / STORE_LAYOUT)
    digests = {hashlib.sha256(w.read_bytes()).hexdigest(): w for w in wheels}
    with pytest.raises(KeyboardInterrupt), store.adding(Compiler(Path(sys.executable))) as adding:
        for sha, wheel in digests.items():
            adding.submit(sha, wheel)
        raise KeyboardInterrupt  # after every unpack started, before finish
    assert all(store.get(sha) is None for sha in digests)
    assert os.listdir(store.path) == []


def test_what_fails_after_an_unpack_leaves_no_staging_behind(tmp_path: Path) -> None:
    """A wheel unpacked, then something of the run fails (a progress line, Ctrl-C in
    the watcher's thread): its staging goes with the rest."""
    wheels = [build_wheel(tmp_path / "dists", f"part{i}", "1.0") for i in range(3)]
    store = Store(tmp_path / STORE_LAYOUT)

    def broken(_sha256: str) -> None:
        raise RuntimeError("the progress line is gone")

    with pytest.raises(RuntimeError), store.adding(Compiler(Path(sys.executable))) as adding:
        adding.watch(broken)
        for wheel in wheels:
            adding.submit(hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel)
        adding.finish()
    assert os.listdir(store.path) == []


def test_a_broken_wheel_fails_the_add_and_publishes_nothing(tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "dists", "good", "1.0")
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.py", "X = 1\n")
    store = Store(tmp_path / STORE_LAYOUT)
    wheels = {"a" * 64: good, "b" * 64: bad}
    with pytest.raises(UnsupportedWheel, match="invalid wheel"):  # checked as pip would
        store.add(wheels, Compiler(Path(sys.executable)))
    assert store.get("a" * 64) is None and os.listdir(store.path) == []


def _scheme(root: Path) -> install.TargetScheme:
    site = str(root / "lib" / "site-packages")
    return install.TargetScheme(site, site, str(root / "bin"), str(root), str(root / "include"))


def _install(entry: Entry, root: Path) -> None:
    request = install.Request(entry, "demo", True, None)
    template = install.script_template(Version("26.3"))
    install.install(request, _scheme(root), sys.executable, template, install.HardLinker())


def test_plans_never_reach_outside_the_target(tmp_path: Path) -> None:
    """An entry point named to escape is refused; a plan edited to escape is made again."""
    store = Store(tmp_path / STORE_LAYOUT)
    compiler = Compiler(Path(sys.executable))
    evil = build_wheel(
        tmp_path / "evil", "demo", "1.0", entry_points={"console_scripts": {"../../x": "demo:f"}}
    )
    sha = hashlib.sha256(evil.read_bytes()).hexdigest()
    with pytest.raises(UnsupportedWheel, match="entry point name"):
        _install(store.add({sha: evil}, compiler)[sha], tmp_path / "t1")
    assert not (tmp_path / "x").exists()

    wheel = build_wheel(tmp_path / "dists", "demo", "1.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    entry = store.add({sha: wheel}, compiler)[sha]
    _install(entry, tmp_path / "t2")
    plan_file = entry.path / install.PLAN_FILE
    plan = json.loads(plan_file.read_text())
    plan["files"][0][1] = "../../../outside.py"
    plan_file.write_text(json.dumps(plan))
    _install(entry, tmp_path / "t3")
    assert not (tmp_path / "outside.py").exists()
    assert sorted(
        p.relative_to(tmp_path / "t3").as_posix() for p in (tmp_path / "t3").rglob("*")
    ) == sorted(p.relative_to(tmp_path / "t2").as_posix() for p in (tmp_path / "t2").rglob("*"))


def _code_filenames(pyc: Path) -> set[str]:
    """The file every code object in a ``.pyc`` (of this interpreter) names."""
    import marshal

    found, todo = set(), [marshal.loads(pyc.read_bytes()[16:])]
    while todo:
        code = todo.pop()
        found.add(code.co_filename)
        todo += [c for c in code.co_consts if hasattr(c, "co_filename")]
    return found


def test_bytecode_names_its_source_as_installed_and_older_entries_are_added_again(
    tmp_path: Path,
) -> None:
    """The store's ``.pyc`` name their source relative to its scheme's directory, not the
    staging directory the entry was built in (gone once it is published); an entry of the
    layout before, whose bytecode does, is discarded and added again."""
    modules = {"demo/sub/mod.py": "def f():\n    return lambda: 1\n", "demo/__init__.py": ""}
    data = {"demo-1.0.data/purelib/extra_mod.py": b"X = 1\n"}
    wheel = build_wheel(tmp_path / "dists", "demo", "1.0", modules=modules, extra_files=data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = Store(tmp_path / STORE_LAYOUT)
    entry = store.add({sha: wheel}, Compiler(Path(sys.executable)))[sha]
    named = {
        rel: _code_filenames(Path(entry.file(entry.pyc[rel])))
        for rel in ("demo/sub/mod.py", "demo-1.0.data/purelib/extra_mod.py")
    }
    assert named == {
        "demo/sub/mod.py": {"demo/sub/mod.py"},
        "demo-1.0.data/purelib/extra_mod.py": {"extra_mod.py"},
    }

    manifest = entry.path / "manifest.json"
    old = json.loads(manifest.read_text())
    old["layout"] = 2
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(old))
    assert store.lookup(sha) is None and not entry.path.exists()
