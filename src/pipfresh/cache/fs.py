"""Walking, reading, writing and removing files in the cache, never through a link.

Two rules keep everything pipfresh does inside the cache root, whatever a restored
archive planted there:

- every directory of the layout that is about to be read, written or deleted is
  checked from the root down, one component at a time with ``lstat``
  (``require_real_dirs``): a link there is refused (``LinkInCache``), never followed
  and never removed (it may be the user's own);
- below those, walks open each directory relative to its parent's descriptor with
  ``O_NOFOLLOW``, a link met on the way is reported as itself and never entered,
  files are opened with ``O_NOFOLLOW``, and removals unlink a link itself.
  ``shutil.rmtree`` removes by descriptor too where the platform allows
  (``rmtree.avoids_symlink_attacks``), and never follows a link even elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

from pipfresh.errors import LinkInCache

TEMP_SUFFIX = ".tmp"  # pip's adjacent_tmp_file and our own atomic writes

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_DIR_FLAGS = os.O_RDONLY | _NOFOLLOW | _DIRECTORY
# Descriptor-relative walking, where the platform has it (not on Windows).
_BY_FD = (
    bool(_NOFOLLOW and _DIRECTORY)
    and os.scandir in os.supports_fd
    and (os.open in os.supports_dir_fd and os.rmdir in os.supports_dir_fd)
)


def refusal(path: str | Path, st: os.stat_result) -> LinkInCache:
    """The one line that says why ``path`` is not used, and what to do."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" to {os.readlink(path)}"
        except OSError:
            target = ""
        return LinkInCache(
            f"refusing to use {path}: it is a symlink{target}, and pipfresh follows no link "
            "inside its cache root (remove the link)"
        )
    if stat.S_ISDIR(st.st_mode):
        what = "a directory where the cache keeps a file"
    elif stat.S_ISREG(st.st_mode):
        what = "a file where the cache keeps a directory"
    else:
        what = "a special file where the cache keeps a directory"
    return LinkInCache(f"refusing to use {path}: it is {what} (remove it)")


def require_real_dirs(root: str | Path, *paths: str | Path) -> None:
    """Every existing component of each of ``paths`` below ``root`` is a real directory.

    ``root`` itself may be a link (``CacheRoot.ensure`` vets it). A missing component
    ends the check for that path: what does not exist yet is created as a directory.
    Raises ``LinkInCache`` for the first link, file or device on the way.
    """
    top = os.path.abspath(root)
    seen: set[str] = set()
    for path in paths:
        rel = os.path.relpath(os.path.abspath(path), top)
        if rel == os.curdir:
            continue
        if rel.split(os.sep, 1)[0] == os.pardir:
            raise ValueError(f"{path} is not under {root}")
        current = top
        for part in rel.split(os.sep):
            current = os.path.join(current, part)
            if current in seen:
                continue
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(st.st_mode):
                raise refusal(current, st)
            seen.add(current)


def require_file(path: str | Path) -> None:
    """``path`` is a regular file or absent (a lock file: opening a link would follow it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise refusal(path, st)


def require_no_links_in(directory: str | Path) -> None:
    """No entry of ``directory`` is a link (the store's entries: each is read and linked)."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise refusal(entry.path, entry.stat(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return


Enter = Callable[[str], bool]


def walk(
    top: str | Path,
    skip: Collection[str] = (),
    *,
    dirs: bool = False,
    enter: Enter | None = None,
) -> Iterator[tuple[str, os.stat_result]]:
    """THE walk of the cache: ``(path, lstat)`` of every entry below ``top`` that is not
    a directory: files, and links of any kind, reported as themselves and never
    entered. With ``dirs``, each directory is reported too, before what it holds.
    Directories in ``skip``, or for which ``enter(path)`` is false, are not entered;
    nothing is walked when ``top`` itself is a link; entries that vanish meanwhile,
    and directories that cannot be opened, are skipped.
    """
    top = os.fspath(top)
    rule = _Rule(skip, dirs, enter)
    if _BY_FD:
        try:
            fd = os.open(top, _DIR_FLAGS)
        except OSError:  # absent, a link (ELOOP), not a directory
            return
        yield from _walk_fd(top, fd, rule)
    elif os.path.isdir(top) and not os.path.islink(top):  # pragma: no cover - Windows
        yield from _walk_paths(top, rule)


class _Rule:
    """What ``walk`` reports and enters."""

    def __init__(self, skip: Collection[str], dirs: bool, enter: Enter | None) -> None:
        self.skip, self.dirs, self.test = skip, dirs, enter

    def enters(self, path: str) -> bool:
        return path not in self.skip and (self.test is None or self.test(path))


def _walk_fd(path: str, fd: int, rule: _Rule) -> Iterator[tuple[str, os.stat_result]]:
    """Walk the directory open as ``fd`` (closed at the end), children by ``dir_fd``."""
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            full = os.path.join(path, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield full, st
                continue
            if rule.dirs:
                yield full, st
            if not rule.enters(full):
                continue
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # replaced by a link or removed since the listing, or unreadable
            yield from _walk_fd(full, child, rule)
    except OSError:
        return
    finally:
        os.close(fd)


def _walk_paths(
    path: str, rule: _Rule
) -> Iterator[tuple[str, os.stat_result]]:  # pragma: no cover - Windows
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield entry.path, st
            continue
        if rule.dirs:
            yield entry.path, st
        if rule.enters(entry.path):
            yield from _walk_paths(entry.path, rule)


def remove_file(path: str | Path) -> int:
    """Unlink one file (or link); bytes freed, 0 when it was already gone."""
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:
        return 0
    return size


def remove_tree(path: str | Path) -> int:
    """Remove a directory tree; bytes freed. A link is unlinked, never followed."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return remove_file(path)
    size = sum(st.st_size for _path, st in walk(path))
    shutil.rmtree(path, ignore_errors=True)
    return size


def remove_temp_files(top: str | Path, skip: Collection[str] = ()) -> int:
    """Delete ``*.tmp`` files below ``top`` (not in ``skip``), writes that never finished;
    bytes freed. Only safe while no writer can be running (the partition held alone).
    """
    found = walk(top, skip)
    return sum(remove_file(path) for path, _st in found if path.endswith(TEMP_SUFFIX))


def remove_empty_dirs(top: str | Path) -> int:
    """Remove the empty directories below ``top`` (not ``top``), deepest first; how many."""
    top = os.fspath(top)
    if not _BY_FD:  # pragma: no cover - Windows
        removed = 0
        if os.path.islink(top):
            return 0
        for dirpath, _dirnames, _filenames in os.walk(top, topdown=False):
            if dirpath != top and not os.path.islink(dirpath):
                try:
                    os.rmdir(dirpath)
                    removed += 1
                except OSError:
                    pass  # not empty
        return removed
    try:
        fd = os.open(top, _DIR_FLAGS)
    except OSError:
        return 0
    return _remove_empty_fd(fd)


def _remove_empty_fd(fd: int) -> int:
    removed = 0
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        for name in names:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            removed += _remove_empty_fd(child)
            try:
                os.rmdir(name, dir_fd=fd)
                removed += 1
            except OSError:
                pass  # not empty
    except OSError:
        pass
    finally:
        os.close(fd)
    return removed


def sha256_of(fp: BinaryIO) -> str:
    """The hex sha256 of what ``fp`` holds from where it stands, read in blocks."""
    digest = hashlib.sha256()
    while block := fp.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file's content."""
    with open(path, "rb") as fp:
        return sha256_of(fp)


def read_text(path: str | Path) -> str:
    """A file's text, never through a link (``OSError`` for a link, as for a missing file)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _BINARY)
    with os.fdopen(fd, "rb") as stream:
        return stream.read().decode("utf-8")


def write_atomic(path: str | Path, text: str, *, tmp: str | Path | None = None) -> None:
    """Replace ``path`` with ``text``: a reader never sees half a file, and no link is
    followed (the temporary file is created new; the rename replaces a link at ``path``
    itself, not its target, and a hardlinked copy of the old file keeps the old one).
    ``tmp`` is where the temporary file goes, by default ``<name>.<pid>.tmp`` beside it.
    """
    write_bytes_atomic(path, text.encode("utf-8"), tmp=tmp)


def write_bytes_atomic(
    path: str | Path, data: bytes, *, tmp: str | Path | None = None, mode: int | None = None
) -> None:
    """``write_atomic`` for bytes; ``mode``, when given, is the new file's permissions."""
    _replace_with(path, lambda stream: stream.write(data), tmp, mode)


def link_atomic(source: str | Path, path: str | Path, *, follow_symlinks: bool = False) -> None:
    """Replace ``path`` with a hardlink to ``source``, as ``write_atomic`` replaces.
    ``OSError`` when it cannot be linked (another filesystem, protected hardlinks)."""
    tmp = _temp_name(path)
    try:
        os.link(source, tmp, follow_symlinks=follow_symlinks)
    except FileExistsError:
        os.unlink(tmp)
        os.link(source, tmp, follow_symlinks=follow_symlinks)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_file(tmp)
        raise


def copy_atomic(source: str | Path, path: str | Path) -> None:
    """Replace ``path`` with a hardlink to ``source`` (a copy across filesystems), as
    ``write_atomic`` replaces: a reader sees the old file or the whole new one."""
    try:
        link_atomic(source, path, follow_symlinks=True)
    except OSError:
        with open(source, "rb") as src:
            _replace_with(path, lambda stream: shutil.copyfileobj(src, stream, 1 << 20))


def _temp_name(path: str | Path) -> str:
    return f"{os.fspath(path)}.{os.getpid()}{TEMP_SUFFIX}"


def _replace_with(
    path: str | Path,
    fill: Callable[[BinaryIO], object],
    tmp: str | Path | None = None,
    mode: int | None = None,
) -> None:
    """THE atomic write: fill a new temporary file, then rename it over ``path``."""
    tmp = os.fspath(tmp) if tmp is not None else _temp_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileExistsError:  # our own leftover with a recycled pid, or a planted link
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as stream:
            fill(stream)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # a full disk must not leave our half-written file behind
        remove_file(tmp)
        raise


def append_text(path: str | Path, text: str) -> None:
    """Append to a log file, never through a link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _BINARY
    fd = os.open(path, flags, 0o666)
    with os.fdopen(fd, "ab") as stream:
        stream.write(text.encode("utf-8"))
