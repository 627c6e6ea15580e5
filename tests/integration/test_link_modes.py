"""No venv can change another (issue 11, item 6): each ``PIPFRESH_LINK_MODE``.

``reflink`` and ``copy`` give every venv files of its own (writable as pip leaves
them, mtime kept so the stored bytecode stays valid); ``hardlink`` shares the
store's read-only inodes, so an edit fails loudly instead of spreading; ``auto``
(the default) clones where the filesystem clones and hardlinks elsewhere. Root
ignores modes: its edit through a hardlink reaches the venvs sharing the inode, and
the store's hash check keeps it out of every later venv.

Cloning needs btrfs, XFS (reflink), APFS...: where no filesystem here clones, the
clone tests skip with the reason, and the fallback chain is tested on the real
non-cloning filesystems (ext4 or tmpfs, and a pair of them across devices).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import Run, index_args, installed_version, pipfresh, store_env
from pipfresh.layout import STORE_LAYOUT
from pipfresh.store import clone, install
from pipfresh.store.entries import Compiler, Entry, Store, current_umask
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

NOBODY = 65534
ORIGINAL, TAMPERED = "original-value", "tampered-value"  # same length
OTHER_FS = Path("/dev/shm")  # tmpfs: another filesystem than tmp_path's, where it exists
# Read at import: the autouse fixture strips PIPFRESH_* from the environment of each test.
GIVEN_CLONE_DIR = os.environ.get("PIPFRESH_TEST_CLONE_DIR")


def _clone_error(directory: Path) -> str | None:
    """Why ``directory`` cannot clone (None: it can), found with FICLONE directly."""
    if sys.platform == "darwin":
        return None if _macos_clones(directory) else "clonefile failed"
    import fcntl  # POSIX only, like the store installer

    src, dest = directory / ".probe-src", directory / ".probe-dest"
    src.write_bytes(b"x" * 4096)
    try:
        with open(src, "rb") as a, open(dest, "wb") as b:
            fcntl.ioctl(b.fileno(), 0x40049409, a.fileno())
        return None
    except OSError as exc:
        return f"FICLONE: {os.strerror(exc.errno or 0)} ({errno.errorcode.get(exc.errno or 0)})"
    finally:
        for path in (src, dest):
            path.unlink(missing_ok=True)


def _macos_clones(directory: Path) -> bool:
    src, dest = directory / ".probe-src", directory / ".probe-dest"
    src.write_bytes(b"x")
    try:
        return subprocess.run(["cp", "-c", str(src), str(dest)]).returncode == 0
    finally:
        for path in (src, dest):
            path.unlink(missing_ok=True)


def _cloning_dir(tmp_path: Path) -> Path:
    """A directory on a filesystem that clones: tmp_path, else $PIPFRESH_TEST_CLONE_DIR."""
    for candidate in [tmp_path, *([Path(GIVEN_CLONE_DIR)] if GIVEN_CLONE_DIR else [])]:
        if _clone_error(candidate) is None:
            return candidate
    pytest.skip(
        f"no filesystem here clones ({tmp_path}: {_clone_error(tmp_path)}); "
        "set PIPFRESH_TEST_CLONE_DIR to a directory on btrfs, XFS or APFS to test cloning"
    )


# -- the linkers, on real filesystems -------------------------------------------------------


def _stored(tmp_path: Path, store_dir: Path) -> Entry:
    wheel = build_wheel(
        tmp_path / "dists", "demo", "1.0", modules={"demo/__init__.py": f"V = {ORIGINAL!r}\n"}
    )
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = Store(store_dir / STORE_LAYOUT)
    return store.add({sha: wheel}, Compiler(Path(sys.executable)))[sha]


def _placed(linker: install.Linker, entry: Entry, dest_dir: Path) -> tuple[Path, Path]:
    src = Path(entry.file("demo/__init__.py"))
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "__init__.py"
    linker.place(str(src), str(dest))
    return src, dest


def _own_file(src: Path, dest: Path) -> None:
    """The target's own file: another inode, the same bytes and mtime, writable as pip's."""
    s, d = src.stat(), dest.stat()
    assert d.st_ino != s.st_ino and d.st_nlink == 1
    assert dest.read_bytes() == src.read_bytes()
    assert d.st_mtime_ns == s.st_mtime_ns  # the stored bytecode stays valid
    assert stat.S_IMODE(d.st_mode) == stat.S_IMODE(s.st_mode) | (0o222 & ~current_umask())
    data = dest.read_bytes()
    with open(dest, "r+b") as fp:  # in place, as an editor would
        fp.write(data.replace(ORIGINAL.encode(), TAMPERED.encode()))
    assert TAMPERED.encode() in dest.read_bytes()
    assert ORIGINAL.encode() in src.read_bytes() and TAMPERED.encode() not in src.read_bytes()


def test_a_clone_is_the_targets_own_file(tmp_path: Path) -> None:
    where = _cloning_dir(tmp_path)
    entry = _stored(tmp_path, where / "cache")
    src, dest = _placed(install.Cloner(install.HardLinker()), entry, where / "venv")
    _own_file(src, dest)


def test_where_the_filesystem_cannot_clone_auto_hardlinks_read_only(tmp_path: Path) -> None:
    """The fallback chain's first step, on this real filesystem (no FICLONE)."""
    if _clone_error(tmp_path) is None:
        pytest.skip(f"{tmp_path} clones: the fallback is not taken here")
    entry = _stored(tmp_path, tmp_path / "cache")
    src, dest = _placed(install.Cloner(install.HardLinker()), entry, tmp_path / "venv")
    assert dest.stat().st_ino == src.stat().st_ino  # linked, not cloned
    assert stat.S_IMODE(dest.stat().st_mode) & 0o222 == 0
    assert os.listdir(dest.parent) == ["__init__.py"]  # no half-made clone left


def test_across_filesystems_every_mode_copies(tmp_path: Path) -> None:
    """Clone and hardlink both fail with EXDEV (tmpfs store, tmp_path's target): a copy."""
    if not OTHER_FS.is_dir() or os.stat(OTHER_FS).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip(f"{OTHER_FS} is not another filesystem here")
    store_dir = OTHER_FS / f"pipfresh-test-{os.getpid()}-{tmp_path.name}"
    try:
        entry = _stored(tmp_path, store_dir)
        for mode in ("auto", "reflink", "hardlink", "copy"):
            venv = tmp_path / mode / "lib"
            venv.mkdir(parents=True)
            linker = install.linker_from_env(
                {install.LINK_MODE_ENV: mode}, entry.file("demo/__init__.py"), [str(venv)]
            )
            if mode != "reflink":
                assert linker.note is None
            src, dest = _placed(linker, entry, venv)
            _own_file(src, dest)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


def test_the_filesystem_is_probed_once_per_run_not_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _stored(tmp_path, tmp_path / "cache")
    tried: list[str] = []
    real = clone._try_clone

    def counted(src: str, directory: str) -> bool:
        tried.append(directory)
        return real(src, directory)

    monkeypatch.setattr(clone, "_try_clone", counted)
    monkeypatch.setattr(clone, "_probed", {})
    dirs = [tmp_path / "venv" / d for d in ("lib", "bin", "include/site/x")]
    for d in dirs[:2]:
        d.mkdir(parents=True)
    sample = entry.file("demo/__init__.py")
    linker = install.linker_from_env({}, sample, map(str, dirs))
    for i in range(20):
        linker.place(sample, str(dirs[0] / f"m{i}.py"))
    install.linker_from_env({}, sample, map(str, dirs))  # a second look: answered from the probe
    assert len(tried) == 1, tried
    assert not [p for d in dirs[:2] for p in os.listdir(d) if "probe" in p]
    clones_here = _clone_error(tmp_path) is None
    assert isinstance(linker, install.Cloner) is clones_here
    assert linker.name == ("reflink" if clones_here else "hardlink")


def test_reflink_never_shares_an_inode_and_says_when_it_copies(tmp_path: Path) -> None:
    entry = _stored(tmp_path, tmp_path / "cache")
    venv = tmp_path / "venv"
    venv.mkdir()
    linker = install.linker_from_env(
        {install.LINK_MODE_ENV: "reflink"}, entry.file("demo/__init__.py"), [str(venv)]
    )
    if _clone_error(tmp_path) is None:
        assert isinstance(linker, install.Cloner) and linker.note is None
    else:
        assert linker.name == "copy"
        assert linker.note == (
            f"PIPFRESH_LINK_MODE=reflink: {venv} cannot clone the store's files: copied"
        )
    _own_file(*_placed(linker, entry, venv))


def test_an_unknown_mode_names_the_choices() -> None:
    with pytest.raises(Exception, match="choose one of auto, reflink, hardlink, copy"):
        install.linker_from_env({install.LINK_MODE_ENV: "symlink"})


# -- two real venvs, each mode --------------------------------------------------------------


def _publish(index: Any, dist_dir: Path) -> None:
    index.publish(
        build_wheel(
            dist_dir,
            "guarded",
            "1.0",
            modules={"guarded/__init__.py": f"VALUE = {ORIGINAL!r}\n", "guarded/sub.py": ""},
        )
    )


def _install(index: Any, venv: Any, tmp_path: Path, mode: str | None) -> Run:
    """Install with ``PIPFRESH_LINK_MODE=mode``; None: unset, the default."""
    env = store_env(**({"PIPFRESH_LINK_MODE": mode} if mode else {}))
    args = ("install", "--python", venv.python, *index_args(index), "guarded")
    return pipfresh(*args, env=env, summary=tmp_path / "s.json").ok()


def _value(venv: Any) -> str:
    return str(venv.run("-c", "import guarded; print(guarded.VALUE)").stdout).strip()


def _module(venv: Any) -> Path:
    return next(venv.path.glob("lib/*/site-packages")) / "guarded" / "__init__.py"


def _edit_as_owner(path: Path) -> subprocess.CompletedProcess[str]:
    """An in-place edit (same inode) by the file's owner, whom its mode binds: this user,
    or, under root (whom no mode binds), nobody, after the file is handed to nobody."""
    offset = path.read_bytes().index(ORIGINAL.encode())
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:
        os.chown(path, NOBODY, NOBODY)
    return subprocess.run(
        ["dd", f"of={path.name}", "bs=1", f"seek={offset}", "conv=notrunc"],
        input=TAMPERED,
        capture_output=True,
        text=True,
        cwd=path.parent,  # entered before dropping to nobody: no need to reach tmp_path
        user=NOBODY if as_root else None,
        group=NOBODY if as_root else None,
    )


@pytest.mark.parametrize("mode", ["copy", "reflink", "hardlink", None])
def test_an_edit_in_one_venv_never_shows_in_another(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path, mode: str | None
) -> None:
    """Own files (copy, reflink, auto on a cloning filesystem) take the edit alone; shared
    read-only inodes (hardlink, auto elsewhere) refuse it: "Permission denied"."""
    _publish(index, dist_dir)
    first, second = make_venv(pip=None), make_venv(pip=None)
    run = _install(index, first, tmp_path, mode)
    _install(index, second, tmp_path, mode)
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    (entry,) = [e for e in root.glob(f"partitions-v1/*/pipfresh/{STORE_LAYOUT}/[0-9a-f]*")]
    stored = entry / "tree" / "guarded" / "__init__.py"
    shares = mode == "hardlink" or (mode is None and _clone_error(tmp_path) is not None)
    for venv in (first, second):
        st = _module(venv).stat()
        assert (st.st_ino == stored.stat().st_ino) is shares
        assert bool(stat.S_IMODE(st.st_mode) & stat.S_IWUSR) is not shares
        assert st.st_mtime_ns == stored.stat().st_mtime_ns
    copied = mode == "reflink" and _clone_error(tmp_path) is not None
    assert ("pipfresh: note: PIPFRESH_LINK_MODE=reflink: " in run.stderr) is copied, run.stderr

    edit = _edit_as_owner(_module(first))
    if shares:
        assert edit.returncode != 0 and "Permission denied" in edit.stderr, edit
        assert ORIGINAL in _module(first).read_text()
    else:
        assert edit.returncode == 0, edit.stderr
        assert TAMPERED in _module(first).read_text()
    assert ORIGINAL in _module(second).read_text() and _value(second) == ORIGINAL
    assert ORIGINAL in stored.read_text()


def test_root_edits_through_a_hardlink_and_the_next_venv_still_gets_the_original(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """What the README says of root: modes stop nothing, the venvs sharing the inode see
    the edit, and the store's check drops the entry, so later venvs never do."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("root only: for anyone else the edit fails (the test above)")
    _publish(index, dist_dir)
    first, second = make_venv(pip=None), make_venv(pip=None)
    _install(index, first, tmp_path, "hardlink")
    _install(index, second, tmp_path, "hardlink")
    module = _module(first)
    data = module.read_bytes()
    with open(module, "r+b") as fp:  # read-only, but root writes anyway
        fp.write(data.replace(ORIGINAL.encode(), TAMPERED.encode()))
    assert TAMPERED in _module(second).read_text()  # the shared inode: hardlinks' limit
    third = make_venv(pip=None)
    summary = _install(index, third, tmp_path, "hardlink").summary
    assert summary is not None
    assert summary["installer_reason"] == "0 from the store, 1 added", summary
    assert _value(third) == ORIGINAL


def test_an_unknown_mode_stops_the_run_before_anything_is_uninstalled(
    index: Any, dist_dir: Path, make_venv: Any, tmp_path: Path
) -> None:
    """A typo in ``PIPFRESH_LINK_MODE`` is refused before pip runs: the installed
    version stays (found only at linking, it came after pip had removed it)."""
    _publish(index, dist_dir)
    venv = make_venv(pip=None)
    _install(index, venv, tmp_path, None)
    index.publish(build_wheel(dist_dir, "guarded", "2.0"))
    env = store_env(PIPFRESH_LINK_MODE="symlink")
    args = ("install", "--python", venv.python, *index_args(index), "--upgrade", "guarded")
    run = pipfresh(*args, env=env)
    assert run.code == 2, run.stderr
    assert "PIPFRESH_LINK_MODE=symlink: choose one of" in run.stderr
    assert installed_version(venv.python, "guarded") == "1.0"
