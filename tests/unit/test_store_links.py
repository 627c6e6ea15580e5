"""Linking sets the ctime of the stored files it links: the next install must not take
that for an edit (nor hash them again), and must take anything after it for one."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

from pipfresh.layout import LINKED, STORE_LAYOUT
from pipfresh.store.entries import Compiler, Entry, Store, stored
from pipfresh.testing.dists import build_wheel


def _stored(tmp_path: Path) -> tuple[Store, Entry]:
    modules = {"demo/__init__.py": "VALUE = 'original'\n", "demo/util.py": "X = 1\n"}
    wheel = build_wheel(tmp_path / "dists", "demo", "1.0", modules=modules)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = Store(tmp_path / STORE_LAYOUT)
    entry = store.add({sha: wheel}, Compiler(Path(sys.executable)))[sha]
    return store, entry


def _link_all(store: Store, entry: Entry, target: Path) -> None:
    with store.linking([entry]):
        for rel in entry.files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(entry.file(rel), dest)


def _same_size_edit(path: str) -> None:
    """In place, size, mode and mtime put back: only the ctime tells."""
    before = os.lstat(path)
    os.chmod(path, before.st_mode | stat.S_IWUSR)
    data = Path(path).read_bytes()
    with open(path, "r+b") as fp:
        fp.write(data.replace(b"original", b"tampered"))
    os.chmod(path, stat.S_IMODE(before.st_mode))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_files_an_install_linked_are_not_hashed_again(tmp_path: Path) -> None:
    store, entry = _stored(tmp_path)
    for n in range(3):  # each install links them again: ctimes move every time
        found = stored(store, [entry.sha256])[entry.sha256]
        assert found.reverified == 0, n
        _link_all(store, found, tmp_path / f"venv{n}")
    assert (entry.path / LINKED).is_file()
    assert not [n for n in os.listdir(store.path) if n.startswith(".tmp-")]  # the clock went


def test_an_edit_after_the_links_is_hashed_and_refused(tmp_path: Path) -> None:
    store, entry = _stored(tmp_path)
    _link_all(store, entry, tmp_path / "venv")
    _same_size_edit(str(tmp_path / "venv" / "demo" / "__init__.py"))  # through the link
    assert stored(store, [entry.sha256]) == {}
    assert not entry.path.exists()  # discarded, to be added again


def test_linked_ctimes_without_a_record_of_the_links_are_hashed_not_refused(
    tmp_path: Path,
) -> None:
    store, entry = _stored(tmp_path)
    _link_all(store, entry, tmp_path / "venv")
    (entry.path / LINKED).unlink()  # e.g. killed before it was written
    found = stored(store, [entry.sha256])[entry.sha256]
    assert found.reverified == len(entry.files)
    assert stored(store, [entry.sha256])[entry.sha256].reverified == 0  # recorded anew


def test_a_failed_install_records_no_window(tmp_path: Path) -> None:
    store, entry = _stored(tmp_path)
    try:
        with store.linking([entry]):
            os.link(entry.file("demo/util.py"), tmp_path / "util.py")
            raise OSError("disk full")
    except OSError:
        pass
    assert not (entry.path / LINKED).exists()
    assert stored(store, [entry.sha256])[entry.sha256].reverified == 1  # the one it linked
