"""pipfresh's own errors: each becomes one clear line on stderr and exit status 2.

pip's failures are not errors here: pip's exit status passes through unchanged.
"""

from __future__ import annotations


class PipfreshError(Exception):
    """A problem pipfresh can explain in one line; the CLI exits with status 2."""

    exit_code = 2


class InterpreterError(PipfreshError):
    """The target interpreter is missing, not runnable, or not understood."""


class CacheRootError(PipfreshError):
    """The cache root is unusable: not a directory, not writable, or not ours."""


class CacheNotWritable(CacheRootError):
    """The cache cannot be used as it is and pipfresh may not repair it (another user's,
    read-only, or holding a planted link): an install runs pip without it."""


class LinkInCache(CacheNotWritable):
    """A symlink (or another kind of file) where the cache root has a directory of its own.

    Followed, it would lead pipfresh's and pip's reads, writes and deletions out of the
    root. It may be the user's own arrangement (a partition moved to another disk), so
    it is never removed: cache commands refuse, an install runs pip without the cache.
    """


class LockTimeout(PipfreshError):
    """Another pipfresh holds the partition for longer than we are willing to wait."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run: where, and the status to exit with.

    A ``KeyboardInterrupt``, so no ``except Exception`` swallows it on the way up;
    ``status`` is pip's when pip was running and reported one, else 128 + the signal.
    """

    def __init__(self, phase: str, status: int) -> None:
        super().__init__(phase, status)
        self.phase = phase
        self.status = status


class StoreError(PipfreshError):
    """A wheel could not be added to the store."""


class InstallError(PipfreshError):
    """A stored wheel could not be installed into the target."""
