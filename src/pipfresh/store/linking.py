"""How a stored file is placed in a target: cloned, hardlinked or copied.

``PIPFRESH_LINK_MODE`` chooses, like uv's ``--link-mode``; each way is a ``Linker``
subclass, so an install never asks which it has.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable, Mapping

from pipfresh.errors import PipfreshError
from pipfresh.store import clone
from pipfresh.store.entries import current_umask

LINK_MODE_ENV = "PIPFRESH_LINK_MODE"


class Linker:
    """Places a stored file at a target path. Subclasses choose how; this one copies."""

    name = "copy"
    note: str | None = None  # what the run should say about how its files were placed

    def __init__(self) -> None:
        self._writable = 0o222 & ~current_umask()  # process-wide: read once, outside the threads

    def place(self, src: str, dest: str) -> None:
        """Copy with the mtime kept: the stored bytecode checks the source's mtime.

        Raises FileExistsError like ``os.link``: copying onto an existing file could
        write through a hardlink into the store.
        """
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "exists", dest)
        shutil.copy2(src, dest)
        self.copy_mode(src, dest)

    def copy_mode(self, src: str, dest: str) -> None:
        """A copy is the target's own file: writable as pip writes it (stored files are not)."""
        os.chmod(dest, stat.S_IMODE(os.stat(src).st_mode) | self._writable)


class HardLinker(Linker):
    """Hardlink, and copy where linking is impossible (another filesystem, no support).

    The target's file is the store's (read-only: an edit fails instead of spreading).
    """

    name = "hardlink"
    _fallback = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)

    def place(self, src: str, dest: str) -> None:
        try:
            os.link(src, dest)
        except OSError as exc:
            if exc.errno not in self._fallback:
                raise
            Linker.place(self, src, dest)


class Cloner(Linker):
    """Clone (copy-on-write): the target's own file, writable as pip leaves it, mtime kept,
    sharing blocks with the store until written. Where the filesystem cannot clone,
    ``uncloned`` places the file instead: a copy, or (``auto``) a hardlink."""

    name = "reflink"

    def __init__(self, uncloned: Linker | None = None) -> None:
        super().__init__()
        self.uncloned = uncloned or Linker()

    def place(self, src: str, dest: str) -> None:
        try:
            clone.clone(src, dest, self._writable)
        except clone.CloneUnsupported:
            self.uncloned.place(src, dest)


MODES = ("auto", "reflink", "hardlink", "copy")
DEFAULT_MODE = "auto"


def link_mode(environ: Mapping[str, str]) -> str:
    """``PIPFRESH_LINK_MODE`` as given, checked (``fastpath.decide`` asks before pip
    uninstalls anything: a typo must not leave the target half replaced)."""
    mode = environ.get(LINK_MODE_ENV, "").strip().lower() or DEFAULT_MODE
    if mode not in MODES:
        raise PipfreshError(f"{LINK_MODE_ENV}={mode}: choose one of {', '.join(MODES)}")
    return mode


def linker_from_env(
    environ: Mapping[str, str], sample: str | None = None, targets: Iterable[str] = ()
) -> Linker:
    """``PIPFRESH_LINK_MODE=auto|reflink|hardlink|copy`` (default auto), like uv's
    ``--link-mode``. ``auto`` clones where the target's filesystem clones ``sample`` (a
    stored file), probed once per filesystem of ``targets``, and hardlinks elsewhere;
    ``reflink`` clones or copies (saying so), never sharing an inode; all copy across
    filesystems."""
    mode = link_mode(environ)
    if mode == "copy":
        return Linker()
    if mode == "hardlink":
        return HardLinker()
    dirs = _existing(targets)
    cloning = sample is not None and any(clone.clones(sample, d) for d in dirs)
    if mode == "reflink":
        if cloning:
            return Cloner(Linker())  # a target directory that cannot clone gets copies
        copier = Linker()
        where = dirs[0] if dirs else "the target"
        copier.note = f"{LINK_MODE_ENV}=reflink: {where} cannot clone the store's files: copied"
        return copier
    return Cloner(HardLinker()) if cloning else HardLinker()


def _existing(paths: Iterable[str]) -> list[str]:
    """Each path, or its nearest existing parent (a scheme directory made on install)."""
    found = []
    for path in dict.fromkeys(paths):
        while path and not os.path.isdir(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        found.append(path)
    return list(dict.fromkeys(found))
