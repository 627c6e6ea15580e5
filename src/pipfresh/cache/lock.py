"""Shared and exclusive locks on a partition.

Installs share a partition (many may run at once: ``tox -p``, a build matrix);
pruning and purging need it alone, so they never remove what a running install
is using. POSIX ``flock`` gives exactly that, and the kernel releases the lock
when a process dies, so a killed run never leaves a stale lock behind.

A lock file is opened with ``O_NOFOLLOW``: a link planted in its place is refused,
never followed (opening it to create it would create its target).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.errors import LockTimeout

DEFAULT_TIMEOUT = 600.0


def lock_timeout() -> float:
    """``PIPFRESH_LOCK_TIMEOUT`` seconds, default 600."""
    try:
        return float(os.environ.get("PIPFRESH_LOCK_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


@contextmanager
def hold(
    path: Path,
    *,
    shared: bool,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[int]:
    """Hold ``path`` locked, waiting at most ``timeout`` seconds (then ``LockTimeout``).

    Yields the locked descriptor: a child process that inherits it (``pass_fds``)
    keeps the lock held even if this process is killed before the child ends.
    """
    wait = lock_timeout() if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open(path)
    try:
        _acquire(fd, shared=shared, timeout=wait, on_wait=on_wait, path=path)
        try:
            yield fd
        finally:
            _release(fd)
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o666)
        except PermissionError:  # another user's lock file: flock needs only a descriptor
            fd = os.open(path, os.O_RDONLY | nofollow)
    except OSError as exc:
        if exc.errno != errno.ELOOP and not os.path.islink(path):
            raise
        raise fs.refusal(path, os.lstat(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device planted in its place
        os.close(fd)
        raise fs.refusal(path, st)
    return fd


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try(fd: int, shared: bool) -> bool:
        # Windows byte-range locks have no shared mode: every holder is exclusive.
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _release(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try(fd: int, shared: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _acquire(
    fd: int, *, shared: bool, timeout: float, on_wait: Callable[[], None] | None, path: Path
) -> None:
    if _try(fd, shared):
        return
    if on_wait is not None:
        on_wait()
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
        if _try(fd, shared):
            return
    kind = "a shared" if shared else "an exclusive"
    raise LockTimeout(
        f"gave up after {timeout:.0f} s waiting for {kind} lock on {path} "
        "(another pipfresh is using this partition; PIPFRESH_LOCK_TIMEOUT sets the wait)"
    )
