"""Copy-on-write clones of stored files: the target's own file, sharing the store's blocks.

A clone (a reflink) costs about what a hardlink costs, yet it is a file of its
own: writing to it changes no other venv and not the store. Linux clones with
the ``FICLONE`` ioctl (btrfs, XFS with reflink, bcachefs, ZFS 2.2+, overlayfs
over one of those), macOS with ``clonefile`` (APFS). ``copy_file_range`` is
not used: on filesystems that cannot clone it copies in the kernel, and nothing
says which happened. Where cloning is impossible the caller falls back
(``CloneUnsupported``); whether a filesystem clones is probed once per target
filesystem (``clones``), not found out file by file.

    if clones(stored_file, site_packages):
        clone(stored_file, site_packages + "/mod.py")
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
_CLONE_NOFOLLOW = 0x0001  # sys/clonefile.h

# What a filesystem (or a pair of them) that cannot clone answers: another filesystem,
# no support, a request it cannot serve; ENOTTY and ENOSYS from kernels without it.
_UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}
)


class CloneUnsupported(OSError):
    """This source and destination cannot be cloned: copy or link instead."""


def clone(src: str, dest: str, add_mode: int = 0) -> None:
    """Make ``dest`` (which must not exist) a clone of ``src``: same bytes, a new inode.

    Its times are the source's (stored bytecode checks its source's mtime), its mode
    the source's plus ``add_mode`` (write bits: the clone is the target's own file).
    Raises ``CloneUnsupported`` (nothing left at ``dest``) where the filesystem cannot
    clone, ``FileExistsError`` where ``dest`` exists.
    """
    _platform_clone(src, dest, add_mode)


def _clone_linux(src: str, dest: str, add_mode: int) -> None:
    import fcntl

    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(src_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dest_fd = os.open(dest, flags, 0o600)
        try:
            fcntl.ioctl(dest_fd, FICLONE, src_fd)
            os.fchmod(dest_fd, (st.st_mode & 0o7777) | add_mode)
            os.utime(dest_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        except OSError as exc:
            os.close(dest_fd)
            os.unlink(dest)
            if exc.errno in _UNSUPPORTED:
                raise CloneUnsupported(exc.errno, os.strerror(exc.errno), dest) from None
            raise
        os.close(dest_fd)
    finally:
        os.close(src_fd)


_clonefile: Callable[[bytes, bytes, int], int] | None = None


def _clone_macos(src: str, dest: str, add_mode: int) -> None:
    """``clonefile(2)``: creates ``dest`` with the source's mode, owner and times."""
    global _clonefile
    import ctypes

    if _clonefile is None:
        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, "clonefile", None)
        if function is None:  # before macOS 10.12
            raise CloneUnsupported(errno.ENOTSUP, "no clonefile", dest)
        function.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32)
        function.restype = ctypes.c_int
        _clonefile = function
    if _clonefile(os.fsencode(src), os.fsencode(dest), _CLONE_NOFOLLOW) == 0:
        if add_mode:
            os.chmod(dest, (os.lstat(dest).st_mode & 0o7777) | add_mode)
        return
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        raise CloneUnsupported(code, os.strerror(code), dest)
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), dest)
    raise OSError(code, os.strerror(code), dest)


def _clone_nowhere(src: str, dest: str, add_mode: int) -> None:
    raise CloneUnsupported(errno.ENOTSUP, "no way to clone on this platform", dest)


_platform_clone: Callable[[str, str, int], None] = (
    _clone_linux
    if sys.platform.startswith("linux")
    else _clone_macos
    if sys.platform == "darwin"
    else _clone_nowhere
)

_probed: dict[tuple[int, int], bool] = {}  # (source device, target device) -> clones
_probe_lock = threading.Lock()


def clones(src: str, directory: str) -> bool:
    """Whether ``src`` can be cloned into ``directory``: tried once per pair of
    filesystems for the process (a clone of ``src`` made there, then removed)."""
    try:
        key = (os.stat(src).st_dev, os.stat(directory).st_dev)
    except OSError:
        return False
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _try_clone(src, directory)
        return _probed[key]


def _try_clone(src: str, directory: str) -> bool:
    probe = os.path.join(directory, f".pipfresh-clone-probe-{os.getpid()}")
    try:
        os.unlink(probe)  # an earlier process of this pid's, killed here
    except OSError:
        pass
    try:
        clone(src, probe)
    except OSError:
        return False
    try:
        os.unlink(probe)
    except OSError:
        pass
    return True


__all__ = ["FICLONE", "CloneUnsupported", "clone", "clones"]
