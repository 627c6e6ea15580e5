"""An HTTP cache directory's files, grouped by entry: walking, finding, removing.

Walks go through ``fs.walk`` (never through a link), entering only pip's five
levels of one-hex-digit directories; what else lies there is reported as stray.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pipfresh.cache import fs
from pipfresh.pip.httpcache.keys import _HEX_DIGIT, _KEY_RE, _infer_format
from pipfresh.pip.httpcache.model import EntryFiles, Format

_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)


_O_BINARY: int = getattr(os, "O_BINARY", 0)


def _open_nofollow(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"not a regular file: {path}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_regular(de: os.DirEntry[str]) -> bool:
    try:
        return de.is_file(follow_symlinks=False)
    except OSError:
        return False


def _scandir_sorted(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda de: de.name)
    except OSError:  # vanished or unreadable: nothing pip could use either
        return []


def _stray(http_dir: Path, fmt: Format, path: Path) -> EntryFiles:
    rel = path.relative_to(http_dir).as_posix()
    return EntryFiles(key=rel, fmt=fmt, meta=None, body=None, strays=(path,))


def _group_leaf(
    http_dir: Path, fmt: Format, leaf: Path, prefix: str, files: list[tuple[str, bool]]
) -> Iterator[EntryFiles]:
    """The entries of one leaf directory from its files, ``(name, is a regular file)``
    sorted by name: grouped by key, then the files that belong to no key."""
    groups: dict[str, dict[str, list[Path]]] = {}
    loose: list[Path] = []
    for name, regular in files:
        path = leaf / name
        key = name[:56]
        if not (_KEY_RE.fullmatch(key) and key.startswith(prefix)):
            loose.append(path)
            continue
        rest = name[56:]
        slots = groups.setdefault(key, {"meta": [], "body": [], "temps": [], "strays": []})
        if regular and rest == "":
            slots["meta"].append(path)
        elif regular and rest == ".body" and fmt == "http-v2":
            slots["body"].append(path)
        elif regular and rest.endswith(".tmp"):
            slots["temps"].append(path)
        else:
            slots["strays"].append(path)
    for key in sorted(groups):
        slots = groups[key]
        yield EntryFiles(
            key=key,
            fmt=fmt,
            meta=slots["meta"][0] if slots["meta"] else None,
            body=slots["body"][0] if slots["body"] else None,
            temps=tuple(slots["temps"]),
            strays=tuple(slots["strays"]),
        )
    for path in loose:
        yield _stray(http_dir, fmt, path)


def iter_entry_files(http_dir: Path, fmt: Format | None = None) -> Iterator[EntryFiles]:
    """Walk one ``http/`` or ``http-v2/`` directory, grouping files by key.

    Yields orphans (body without metadata), temp leftovers and stray files
    too.  Symlinks are reported as strays and never followed; unknown
    directories are skipped.  Tolerates directories vanishing mid-walk.
    """
    http_dir = Path(http_dir)
    fmt = fmt or _infer_format(http_dir)
    yield from group_files(http_dir, fmt, fs.walk(http_dir, enter=hex_dirs(http_dir)))


def hex_dirs(http_dir: Path) -> fs.Enter:
    """``fs.walk``'s rule for a cache directory: only pip's five levels of hex digits."""
    top = os.path.join(os.fspath(http_dir), "")

    def enter(path: str) -> bool:
        parts = path[len(top) :].split(os.sep)
        return len(parts) <= 5 and all(len(p) == 1 and p in _HEX_DIGIT for p in parts)

    return enter


def group_files(
    http_dir: Path, fmt: Format, found: Iterable[tuple[str, os.stat_result]]
) -> Iterator[EntryFiles]:
    """The entries of ``http_dir`` from its walk's files, in the order of names
    (each leaf's keyed entries before its stray files)."""
    top = os.path.join(os.fspath(http_dir), "")
    leaves: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    rows: list[tuple[tuple[tuple[int, str], ...], EntryFiles]] = []
    for full, st in found:
        parts = tuple(full[len(top) :].split(os.sep))
        if len(parts) == 6:
            leaves.setdefault(parts[:5], []).append((parts[5], stat.S_ISREG(st.st_mode)))
        else:
            rows.append((tuple((0, p) for p in parts), _stray(http_dir, fmt, Path(full))))
    for dirs, files in leaves.items():
        files.sort()
        where = tuple((0, p) for p in dirs)
        grouped = _group_leaf(http_dir, fmt, http_dir.joinpath(*dirs), "".join(dirs), files)
        rows += (((*where, (0, str(i).zfill(9))), entry) for i, entry in enumerate(grouped))
    rows.sort(key=lambda row: row[0])
    for _where, entry in rows:
        yield entry


def entry_files_for(meta: Path, fmt: Format | None = None) -> EntryFiles:
    """The files of the entry whose metadata path is ``meta`` (e.g. from :func:`entry_path`).

    Works whether or not the files exist; ``fmt`` defaults to the name of the
    cache directory five levels above the leaf.
    """
    meta = Path(meta)
    if not _KEY_RE.fullmatch(meta.name) or len(meta.parts) < 7:
        raise ValueError(f"not a cache entry path: {meta}")
    leaf = meta.parent
    http_dir = meta.parents[5]
    fmt = fmt or _infer_format(http_dir)
    prefix = "".join(leaf.parts[-5:])
    files = [(de.name, _is_regular(de)) for de in _scandir_sorted(leaf)]
    for entry in _group_leaf(http_dir, fmt, leaf, prefix, files):
        if entry.key == meta.name:
            return entry
    return EntryFiles(key=meta.name, fmt=fmt, meta=None, body=None)


def _unlink_all(paths: Iterable[Path]) -> int:
    freed = 0
    for path in paths:
        try:
            st = os.lstat(path)
            os.unlink(path)  # removes a symlink itself, never its target
        except FileNotFoundError:
            continue  # another pip got there first
        if st.st_nlink <= 1:  # a hard link shared with another cache frees nothing
            freed += st.st_size
    return freed


def remove_entry(entry: EntryFiles) -> int:
    """Delete the entry's own files (never directories); return bytes freed.

    Files hard-linked elsewhere (another partition) count as freeing nothing.
    Tolerates files vanishing concurrently.  A temp file may belong to a pip
    that is writing right now; callers should skip young ones.
    """
    return _unlink_all(entry.paths)
