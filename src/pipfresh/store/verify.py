"""What a stored file was and is: its recorded stat and content hash, its fingerprint now.

Hardlinked files share inodes with the store, so an edit through a target (or a restore,
or a chown) would change the store. A file's stat is compared with the fingerprint
pipfresh recorded (one ``stat``; inode and ctime included, which ``os.utime`` cannot
restore); only a file that differs is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipfresh.layout import FINGERPRINT, LINKED


class Stat(NamedTuple):
    """A stored file as its manifest records it: the content stored, and its stat then."""

    size: int
    mtime_ns: int
    mode: int
    sha256: str


class Fingerprint(NamedTuple):
    """A stored file's stat as pipfresh last saw it with its content verified.

    An edit, a restore or a chown changes it: the inode and ctime are what
    ``os.utime`` cannot put back. ``os.link`` changes the ctime too: see ``Window``.
    (A tuple: an install compares one per stored file.)
    """

    size: int
    mtime_ns: int
    mode: int
    uid: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        mode = stat.S_IMODE(st.st_mode)
        return cls(st.st_size, st.st_mtime_ns, mode, st.st_uid, st.st_ino, st.st_ctime_ns)


class Window(NamedTuple):
    """The span of the file system's clock in which an install last linked an entry.

    ``os.link`` sets the ctime of the file it links to the clock's time, so every
    install changes the ctime of every file it links. Rather than stat each file
    again afterwards to record it, an install records when it linked: a file whose
    fingerprint is the recorded one but for a ctime inside that span was changed by
    those links and nothing after them (anything later, an edit through a venv
    included, sets a later ctime). The span is read from the same clock, as the
    ctime of a file the store touches before and after linking.
    """

    start_ns: int
    end_ns: int

    def relinked(self, now: tuple[int, ...], seen: tuple[int, ...]) -> bool:
        """``now`` is ``seen`` (fingerprints) but for a ctime set by the links made in
        this window."""
        return now[:5] == seen[:5] and self.start_ns <= now[5] <= self.end_ns


@dataclass(frozen=True)
class Check:
    """One look at an entry: why it cannot be used (None: it can, once the files in
    ``differ`` are hashed again), and every file's fingerprint now.

    ``differ`` are the files whose stat is neither the recorded fingerprint nor the
    recorded one relinked: their content must be hashed (``rehash``) before use.
    """

    problem: str | None
    now: Mapping[str, Fingerprint]
    differ: list[str]


def euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def sha256_of(path: str) -> str:
    """The hex sha256 of a file's content ("" when it cannot be read), never through a link."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def settle(path: str, stored: Stat, seen: Fingerprint) -> Fingerprint:
    """Put a verified file's mode and mtime back as stored (the stored bytecode checks its
    source's mtime); its fingerprint after. ``seen``: its fingerprint as taken before it
    was hashed, kept when nothing needs putting back (a later change, even during the
    hash, then differs from it)."""
    if seen.mode == stored.mode and seen.mtime_ns == stored.mtime_ns:
        return seen
    if seen.mode != stored.mode:
        os.chmod(path, stored.mode)
    if seen.mtime_ns != stored.mtime_ns:
        os.utime(path, ns=(os.lstat(path).st_atime_ns, stored.mtime_ns))
    return Fingerprint.of(os.lstat(path))


def read_fingerprints(path: Path, sha256: str) -> dict[str, Fingerprint]:
    """The entry's recorded fingerprints; none when missing or unreadable (all hashed)."""
    try:
        data = json.loads((path / FINGERPRINT).read_text(encoding="utf-8"))
        if data.get("sha256") != sha256:
            return {}
        # Not checked value by value: a value that is not a stat's never equals one (the
        # file is hashed again), and there is one per stored file.
        return {rel: Fingerprint._make(v) for rel, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def read_window(path: Path, sha256: str) -> Window | None:
    """When an install last linked the entry at ``path`` (None: unknown, so its
    relinked files are hashed again)."""
    try:
        data = json.loads((path / LINKED).read_text(encoding="utf-8"))
        if data.get("sha256") != sha256:
            return None
        start, end = data["window"]
        return Window(int(start), int(end))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def window_text(sha256: str, window: Window) -> str:
    return json.dumps({"sha256": sha256, "window": list(window)})


def fingerprint_text(sha256: str, seen: Mapping[str, Fingerprint]) -> str:
    files = {rel: [f.size, f.mtime_ns, f.mode, f.uid, f.ino, f.ctime_ns] for rel, f in seen.items()}
    return json.dumps({"sha256": sha256, "files": files})


def check_files(
    prefix: str,
    files: Mapping[str, Stat],
    seen: Mapping[str, Fingerprint],
    owner: int | None,
    window: Window | None = None,
) -> Check:
    """Compare every file under ``prefix`` with its fingerprint (one ``lstat`` each).

    Changes nothing and reads no content: the files that differ are in ``differ``,
    for ``rehash``. A file ``owner`` does not own is a problem whatever its content.
    Every file's fingerprint now (``now``, what is recorded after a rehash) only when
    some differ: taken in a second look, which compares them all again.
    """
    check = _look(prefix, files, seen, owner, window, None)
    if check.problem is None and check.differ:
        return _look(prefix, files, seen, owner, window, {})
    return check


def _look(
    prefix: str,
    files: Mapping[str, Stat],
    seen: Mapping[str, Fingerprint],
    owner: int | None,
    window: Window | None,
    now: dict[str, Fingerprint] | None,
) -> Check:
    differ = []
    lstat, s_isreg = os.lstat, stat.S_ISREG
    for rel, stored in files.items():
        try:
            st = lstat(prefix + rel)
        except OSError:
            return Check(f"{rel} is missing", {}, [])
        if not s_isreg(st.st_mode) or st.st_size != stored.size:
            return Check(f"{rel} changed", {}, [])
        if owner is not None and st.st_uid != owner:
            return Check(f"{rel} belongs to uid {st.st_uid}", {}, [])
        # Fingerprint.of(st) as a plain tuple: this loop runs once per installed file
        fp = (st.st_size, st.st_mtime_ns, st.st_mode & 0o7777, st.st_uid, st.st_ino, st.st_ctime_ns)
        if now is not None:
            now[rel] = Fingerprint._make(fp)
        recorded = seen.get(rel)
        if fp != recorded and not (
            window is not None and recorded is not None and window.relinked(fp, recorded)
        ):
            differ.append(rel)
    return Check(None, now or {}, differ)


def rehash(prefix: str, files: Mapping[str, Stat], differ: Iterable[str]) -> str | None:
    """Hash again the files of a ``Check`` that differ: the first whose content is not
    the stored one, as a problem (None: all hold what was stored)."""
    for rel in differ:
        if sha256_of(prefix + rel) != files[rel].sha256:
            return f"{rel} changed"
    return None


def not_owned(path: Path, prefix: str, files: Iterable[str], owner: int | None) -> str | None:
    """A directory or metadata file of the entry at ``path`` (its tree at ``prefix``) that
    is a link or not ``owner``'s: its owner could change what a target links."""
    dirs = set()
    for rel in files:
        parent = rel.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    try:
        tops = [(e.name, e.stat(follow_symlinks=False)) for e in os.scandir(path)]
        inner = [(d, os.lstat(prefix + d)) for d in dirs]
    except OSError:
        return "unreadable"
    for name, st in tops:
        if stat.S_ISLNK(st.st_mode):
            return f"{name} is a link"
        if owner is not None and st.st_uid != owner:
            return f"{name} belongs to uid {st.st_uid}"
    for name, st in inner:
        if not stat.S_ISDIR(st.st_mode):
            return f"{name} is not a directory"
        if owner is not None and st.st_uid != owner:
            return f"{name} belongs to uid {st.st_uid}"
    return None
