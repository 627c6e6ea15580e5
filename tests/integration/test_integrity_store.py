"""Store entries are immutable: what a venv, a user or a restore does to a stored file
never reaches the next venv, and a restore that only lost mtimes costs a hash, not a rebuild.

Store files are hardlinked into venvs, so an edit through one venv edits the store.
Each entry's manifest holds every file's sha256 (the wheel's files, hashed while
unpacking, and the bytecode, hashed when compiled); a file whose stat differs from
the fingerprint pipfresh recorded (inode and ctime included: ``os.utime`` restores
neither) is hashed again before it is linked.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, pipfresh, store_env
from pipfresh.layout import STORE_LAYOUT
from pipfresh.store.entries import Compiler, Store
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

NOBODY = 65534
ORIGINAL, TAMPERED = "original-value", "tampered-value"  # same length: same size after an edit


def _publish(index: Any, dist_dir: Path) -> None:
    """A small workload: an app, two libraries, several modules each (bytecode for all)."""
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["guarded", "other"]),
        build_wheel(
            dist_dir,
            "guarded",
            "1.0",
            modules={
                "guarded/__init__.py": f"VALUE = {ORIGINAL!r}\n",
                "guarded/sub.py": "def f():\n    return 1\n",
            },
        ),
        build_wheel(
            dist_dir,
            "other",
            "2.0",
            modules={f"other/m{i}.py": f"X = {i}\n" for i in range(5)} | {"other/__init__.py": ""},
        ),
    )


def _store() -> Path:
    (found,) = Path(os.environ["PIPFRESH_CACHE_DIR"]).glob(
        f"partitions-v1/*/pipfresh/{STORE_LAYOUT}"
    )
    return found


def _entry_of(name: str) -> Path:
    for entry in _store().iterdir():
        manifest = entry / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text())["wheel"].startswith(name + "-"):
            return entry
    raise AssertionError(f"no store entry for {name}")


def _install(index: Any, venv: Any, tmp_path: Path, **env: str) -> dict[str, Any]:
    args = ("install", "--python", venv.python, *index_args(index), "app")
    run = pipfresh(*args, env=store_env(**env), summary=tmp_path / "s.json").ok()
    assert run.summary is not None
    return run.summary


def _value(venv: Any) -> str:
    out = venv.run("-c", "import guarded; print(guarded.VALUE)")
    return str(out.stdout).strip()


def _edit_keeping_stat(path: Path, old: str, new: str) -> None:
    """An in-place edit of the same size, mode and mtime put back (``os.utime``):
    what an editor through a hardlinked venv does, then hides."""
    before = path.lstat()
    path.chmod(before.st_mode | stat.S_IWUSR)  # store files are read-only (root ignores it)
    data = path.read_bytes()
    assert old.encode() in data
    with open(path, "r+b") as fp:  # in place: the same inode, as through a link
        fp.write(data.replace(old.encode(), new.encode()))
    path.chmod(stat.S_IMODE(before.st_mode))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.lstat()
    assert (after.st_size, after.st_mtime_ns, after.st_mode, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_mode,
        before.st_ino,
    )


@pytest.mark.parametrize("then", ["install", "prune-then-install"])
@pytest.mark.parametrize("link_mode", ["hardlink", "copy"])
@pytest.mark.parametrize("edited", [".py", ".pyc"])
def test_an_edit_that_keeps_size_and_mtime_never_reaches_the_next_venv(
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    tmp_path: Path,
    edited: str,
    link_mode: str,
    then: str,
) -> None:
    _publish(index, dist_dir)
    first = make_venv(pip=None)
    _install(index, first, tmp_path, PIPFRESH_LINK_MODE=link_mode)
    assert _value(first) == ORIGINAL
    entry = _entry_of("guarded")
    tree = entry / "tree" / "guarded"
    victim = (
        tree / "__init__.py" if edited == ".py" else next(tree.glob("__pycache__/__init__.*.pyc"))
    )
    _edit_keeping_stat(victim, ORIGINAL, TAMPERED)

    if then == "prune-then-install":
        pipfresh("cache", "prune", "--mode", "valid").ok()
        assert not entry.exists(), "a changed entry survived prune --mode valid"
    second = make_venv(pip=None)
    summary = _install(index, second, tmp_path, PIPFRESH_LINK_MODE=link_mode)
    assert _value(second) == ORIGINAL
    site = next(second.path.glob("lib/*/site-packages"))
    assert TAMPERED not in (site / "guarded" / "__init__.py").read_text()
    fresh = _entry_of("guarded") / "tree" / victim.relative_to(entry / "tree")
    assert TAMPERED.encode() not in fresh.read_bytes()  # the entry was added again
    assert "2 from the store, 1 added" in summary["installer_reason"], summary


def test_store_files_have_no_write_bits(tmp_path: Path) -> None:
    """An edit through a hardlinked venv then fails loudly (for anyone but root)."""
    wheel = build_wheel(
        tmp_path / "dists",
        "ro",
        "1.0",
        modules={"ro/__init__.py": "X = 1\n", "ro/sub/m.py": "Y = 2\n"},
        entry_points={"console_scripts": {"ro-cli": "ro:main"}},
    )
    import hashlib

    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = Store(tmp_path / STORE_LAYOUT)
    entry = store.add({sha: wheel}, Compiler(Path(sys.executable)))[sha]
    found = {}
    for path in [entry.tree, *entry.tree.rglob("*")]:
        found[path.relative_to(entry.tree).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    files = {rel: mode for rel, mode in found.items() if (entry.tree / rel).is_file()}
    dirs = {rel: mode for rel, mode in found.items() if (entry.tree / rel).is_dir()}
    assert any(rel.endswith(".pyc") for rel in files) and len(files) >= 5, files
    assert {rel: mode & 0o222 for rel, mode in files.items()} == dict.fromkeys(files, 0)
    assert all(mode & stat.S_IWUSR for mode in dirs.values()), dirs  # discard and prune work
    assert store.lookup(sha) is not None  # read-only is how it was stored: still intact
    store.discard(sha)
    assert not entry.path.exists()


# -- ownership --------------------------------------------------------------------------


def _owners(top: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            uid = path.lstat().st_uid
            counts[uid] = counts.get(uid, 0) + 1
    return counts


def _chown(paths: list[Path], uid: int) -> None:
    for path in paths:
        os.lchown(path, uid, uid)


@pytest.mark.parametrize("foreign", ["files-only", "everything"])
def test_ownership_never_crosses_users_through_shared_inodes(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path, foreign: str
) -> None:
    """nobody's venv shares inodes with a store that (in part) belongs to nobody; root then
    installs. Root's venv gets no file nobody can write; nobody's venv keeps its owner."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to hand files to another user")
    _publish(index, dist_dir)
    theirs = make_venv(pip=None)
    _install(index, theirs, tmp_path)
    site = next(theirs.path.glob("lib/*/site-packages"))
    linked = [p for p in site.rglob("*") if p.is_file() and p.lstat().st_nlink > 1]
    assert len(linked) >= 10  # really shared with the store
    store = _store()
    if foreign == "files-only":  # the directories stay root's: a one-level look misses it
        _chown([p for p in store.rglob("*") if p.is_file()], NOBODY)
    else:  # a cache restored by nobody: everything in it is nobody's
        root = Path(os.environ["PIPFRESH_CACHE_DIR"])
        _chown([root, *root.rglob("*")], NOBODY)
    _chown([theirs.path, *theirs.path.rglob("*")], NOBODY)
    theirs_before = _owners(theirs.path)
    assert set(theirs_before) == {NOBODY}

    mine = make_venv(pip=None)
    _install(index, mine, tmp_path)
    assert _value(mine) == ORIGINAL
    assert NOBODY not in _owners(mine.path), _owners(mine.path)
    assert _owners(theirs.path) == theirs_before  # no chown through a shared inode
    assert NOBODY not in _owners(_store() / "..")  # root's store now: foreign entries replaced


# -- a restore that rounds mtimes ---------------------------------------------------------


def _zip_rounded(ns: int) -> int:
    """A zip archive's mtime: DOS time, whole seconds rounded down to an even one."""
    seconds = ns // 1_000_000_000
    return (seconds - seconds % 2) * 1_000_000_000


def _pyc_matches_source(pyc: Path, source: Path) -> bool:
    """importlib's check of a timestamp pyc: its source's mtime (whole seconds) and size."""
    header = pyc.read_bytes()[:16]
    flags, mtime, size = struct.unpack("<III", header[4:16])
    st = source.stat()
    return flags == 0 and mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size


def test_rounded_mtimes_after_a_restore_are_reverified_by_hash_not_rebuilt(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    _publish(index, dist_dir)
    _install(index, make_venv(pip=None), tmp_path)
    store = _store()
    manifests = {e.name: (e / "manifest.json").stat().st_ino for e in store.iterdir()}
    assert len(manifests) == 3
    recorded = {}
    for entry in store.iterdir():
        files = json.loads((entry / "manifest.json").read_text())["files"]
        recorded.update({entry / "tree" / rel: values[1] for rel, values in files.items()})
    for path in recorded:  # what Python's zipfile (and GitLab's cache) gives back
        st = path.lstat()
        os.utime(path, ns=(st.st_atime_ns, _zip_rounded(st.st_mtime_ns)))

    venv = make_venv(pip=None)
    summary = _install(index, venv, tmp_path)
    reason = summary["installer_reason"]
    assert reason.startswith("3 from the store (3 re-verified"), reason
    assert reason.endswith(", 0 added"), reason
    assert {e.name: (e / "manifest.json").stat().st_ino for e in store.iterdir()} == manifests
    assert {p: p.lstat().st_mtime_ns for p in recorded} == recorded  # mtimes put back
    assert _value(venv) == ORIGINAL
    site = next(venv.path.glob("lib/*/site-packages"))
    pycs = list(site.rglob("__pycache__/*.pyc"))
    checked = 0
    for pyc in pycs:
        source = pyc.parent.parent / (pyc.name.split(".", 1)[0] + ".py")
        if source.exists():
            assert _pyc_matches_source(pyc, source), pyc
            checked += 1
    assert checked >= 8
    before = {p: p.stat().st_ino for p in pycs}
    venv.run("-c", "import app, guarded.sub, other.m1, other.m4")
    assert {p: p.stat().st_ino for p in pycs} == before  # no stale bytecode rewritten

    # Verified once: linking re-recorded the fingerprints, the next venv hashes nothing.
    again = _install(index, make_venv(pip=None), tmp_path)["installer_reason"]
    assert again == "3 from the store, 0 added", again
