"""Two interpreters on one cache root: the files their stores would hold twice (a pure
wheel's, the sources two builds of a release share) are one inode, each partition's
bytecode its own and valid; a sibling's file that is not what the wheel holds is never
linked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, pipfresh, store_env
from pipfresh.layout import STORE_LAYOUT
from pipfresh.testing.dists import build_wheel, native_tag
from pipfresh.testing.index import PackageIndex

COMMON = "def shared():\n    return 'the same in every build'\n"


@pytest.fixture
def pythons(interpreters: dict[str, Path]) -> tuple[Path, Path]:
    if not {"3.11", "3.12"} <= interpreters.keys():
        pytest.skip("needs Python 3.11 and 3.12")
    return interpreters["3.11"], interpreters["3.12"]


def _publish(index: PackageIndex, dist_dir: Path, pythons: tuple[Path, ...]) -> None:
    """``pure`` (one wheel for both) and ``plat`` (a build per interpreter, sharing
    ``plat/common.py``; ``plat/_build.py`` stands for the extension module)."""
    index.publish(build_wheel(dist_dir, "pure", "1.0"))
    for python in pythons:
        tag = native_tag(python)
        modules = {
            "plat/__init__.py": "from plat.common import shared\n",
            "plat/common.py": COMMON,
            "plat/_build.py": f"TAG = {tag!r}\n",
        }
        index.publish(build_wheel(dist_dir, "plat", "1.0", tag=tag, modules=modules))


@dataclass
class _Two:
    """Installs of ``pure`` and ``plat`` through the store, into a new venv of either
    interpreter, on one cache root."""

    index: PackageIndex
    make_venv: MakeVenv
    pythons: tuple[Path, Path]
    tmp: Path

    def install(self, which: int) -> tuple[Any, dict[str, Any]]:
        venv = self.make_venv(self.pythons[which], pip="26.3")
        args = ["install", "--python", venv.python, *index_args(self.index), "pure", "plat"]
        run = pipfresh(*args, env=store_env(), summary=self.tmp / "s.json").ok()
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        return venv, run.summary


@pytest.fixture
def two(
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    pythons: tuple[Path, Path],
    tmp_path: Path,
) -> _Two:
    _publish(index, dist_dir, pythons)
    return _Two(index, make_venv, pythons, tmp_path)


def _stored(python_tag: str) -> dict[str, dict[str, Path]]:
    """Each store entry's files (by archive path), by wheel project, in one partition."""
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    (store,) = root.glob(f"partitions-v1/{python_tag}-*/pipfresh/{STORE_LAYOUT}")
    out: dict[str, dict[str, Path]] = {}
    for entry in store.iterdir():
        if entry.name.startswith("."):
            continue
        manifest = json.loads((entry / "manifest.json").read_text())
        files = {rel: entry / "tree" / rel for rel in manifest["files"]}
        out[manifest["wheel"].split("-")[0]] = files
    return out


def _run(python: Path, code: str) -> str:
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_second_interpreter_links_the_files_it_would_store_again(two: _Two) -> None:
    two.install(0)
    venv, _ = two.install(1)
    first, second = _stored("cp311"), _stored("cp312")

    def same(project: str, rel: str) -> bool:
        return first[project][rel].stat().st_ino == second[project][rel].stat().st_ino

    assert same("pure", "pure/__init__.py") and same("plat", "plat/common.py")
    assert not same("plat", "plat/_build.py")  # another content: a copy each
    inodes = {path.stat().st_ino for files in first.values() for path in files.values()}
    bytecode = [p for files in second.values() for r, p in files.items() if r.endswith(".pyc")]
    assert bytecode and not any(p.stat().st_ino in inodes for p in bytecode)

    # 3.12's bytecode was compiled against the shared source's mtime: importing uses it
    # as it is (a stale one would be written again, a new file in place of the link).
    pyc = second["plat"]["plat/__pycache__/common.cpython-312.pyc"]
    site = Path(_run(venv.python, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    installed = site / "plat" / "__pycache__" / "common.cpython-312.pyc"
    assert installed.stat().st_ino == pyc.stat().st_ino
    assert _run(venv.python, "import plat; print(plat.shared())") == "the same in every build"
    assert installed.stat().st_ino == pyc.stat().st_ino, "the bytecode was stale"

    # The first interpreter's next install hashes the shared files again (their ctime
    # changed with the links) and installs from its store as before.
    _, summary = two.install(0)
    assert summary["installer_reason"].startswith("2 from the store"), summary


def test_a_sibling_file_unlike_the_wheels_is_never_linked(two: _Two) -> None:
    """3.11's stored ``plat/common.py`` edited (same size, mode put back): its manifest
    still names the wheel's sha256, but 3.12 compares content and keeps its own copy."""
    two.install(0)
    edited = _stored("cp311")["plat"]["plat/common.py"]
    mode = stat.S_IMODE(edited.stat().st_mode)
    edited.chmod(0o644)
    edited.write_text(COMMON.replace("same", "SAME"))
    edited.chmod(mode)
    venv, _ = two.install(1)
    mine = _stored("cp312")["plat"]["plat/common.py"]
    assert mine.stat().st_ino != edited.stat().st_ino
    assert mine.read_text() == COMMON
    assert _run(venv.python, "import plat; print(plat.shared())") == "the same in every build"
