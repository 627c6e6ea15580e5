"""Every child process of a run, started, waited for and stopped one way.

A run's children are pip (an install, its dry run, ``pip wheel``, an
uninstall) and helpers with process pools (the store's bytecode compiler).
Ctrl-C must stop all of them promptly and leave nothing running or locked:

- pip stays in pipfresh's process group, as if the user ran it: Ctrl-C reaches
  it from the terminal (where it may also prompt), it cleans up and exits with
  its own status. pipfresh waits for that status at most ``GRACE`` seconds,
  then terminates it, then kills it (``run``).
- a ``Helper`` gets a process group of its own: Ctrl-C never reaches it, and
  when the run stops the whole group (its pool's workers too) is killed and
  reaped before the caller removes what it was writing. A helper whose input
  ends without the end marker (its parent died) kills its own group.

Outside those waits Ctrl-C stops the run where it is. Either way the run
unwinds once (locks released, staging removed) with ``Interrupted``: the phase
it stopped in and the status to exit with (pip's, else ``128 + signal``).
Further signals while it unwinds are noted, not acted on: cleanup finishes.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from pipfresh.errors import Interrupted

GRACE = 4.0  # seconds pip gets after Ctrl-C to clean up and report its status
KILL_AFTER = 2.0  # seconds after SIGTERM before SIGKILL; also the bound for a killed helper
END = b"null\n"  # the end marker of a helper's input (a JSON null line)


@dataclass
class _Run:
    """Signals seen by this run, and what it is doing, for the one ``Interrupted``."""

    signum: int | None = None
    at: float = 0.0
    phase: str = ""  # where the first signal found the run
    raised: bool = False  # the run was told (once)
    deferring: int = 0  # inside a child's start or wait: the wait decides
    phases: list[str] = field(default_factory=list)
    pips: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def current(self) -> str:
        return self.phases[-1] if self.phases else "starting"

    def interrupted(self) -> Interrupted:
        self.raised = True
        signum = self.signum or signal.SIGINT
        return Interrupted(self.phase, 128 + signum)


_run = _Run()
_inherited: tuple[int, ...] = ()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    run = _run
    if run.signum is None:
        run.signum, run.at, run.phase = signum, time.monotonic(), run.current()
    if signum == signal.SIGTERM:  # sent to pipfresh alone (a CI runner): pass it on
        for proc in run.pips:
            with suppress(OSError):
                proc.send_signal(signum)
    if not run.raised and run.deferring == 0:
        raise run.interrupted()


@contextmanager
def handling_interrupts(phase: str) -> Iterator[None]:
    """For one run: Ctrl-C (SIGINT) and SIGTERM end it once, as ``Interrupted``.

    After an interrupt the handlers stay: a second Ctrl-C while pipfresh exits is
    noted, not a traceback.
    """
    global _run
    if not _main_thread():  # signals reach the main thread only: nothing to handle here
        yield
        return
    previous = _run
    _run = _Run(phases=[phase])
    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if _run.signum is None:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            _run = previous


@contextmanager
def phase(label: str) -> Iterator[None]:
    """Name what the run is doing, for the line an interrupt prints."""
    if not _main_thread():
        yield
        return
    _run.phases.append(label)
    try:
        yield
    finally:
        _run.phases.remove(label)


@contextmanager
def _deferred(*, then_raise: bool = True) -> Iterator[_Run]:
    """A signal now is noted, not raised: the child's start or wait decides what it means.

    Without ``then_raise`` the caller raises a noted signal itself (``Interrupted``).
    """
    run = _run
    if not _main_thread():
        yield run
        return
    run.deferring += 1
    try:
        yield run
    finally:
        run.deferring -= 1
    if then_raise and run.signum is not None and not run.raised and run.deferring == 0:
        raise run.interrupted()


@contextmanager
def children_inherit(fd: int | None) -> Iterator[None]:
    """Every child started meanwhile inherits ``fd``: the partition lock.

    The lock is then held until the last child is done with the partition, even
    if pipfresh alone is killed, so a prune never runs under a writing pip.
    """
    global _inherited
    previous = _inherited
    _inherited = (fd,) if fd is not None and os.name == "posix" else ()
    try:
        yield
    finally:
        _inherited = previous


def status(code: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N ended it."""
    return 128 - code if code < 0 else code


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    label: str,
    *,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    each_line: Callable[[bytes], None] | None = None,
    poll: Callable[[], None] | None = None,
) -> int:
    """Run pip (or any child that shares the terminal) and return its exit status.

    ``stdout`` receives its output, or ``each_line`` each line of it (``stderr``, its
    errors, else they go to the terminal); ``poll`` is
    called while it runs (every 50 ms). After Ctrl-C, pip's own status (130 if it
    reports none) comes as ``Interrupted``, once pip is gone.
    """
    with _deferred() as run_:
        with phase(label):
            before = time.monotonic()
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdout=subprocess.PIPE if each_line is not None else stdout,
                stderr=stderr,
                pass_fds=_inherited,
            )
            run_.pips.append(proc)
            pump = _pump(proc.stdout, each_line) if each_line is not None else None
            try:
                code = status(_wait(run_, proc, before, poll))
            except BaseException:
                _stop(proc)
                raise
            finally:
                run_.pips.remove(proc)
                if pump is not None:
                    pump.join(KILL_AFTER)  # a grandchild may hold the pipe: do not wait for it
        if run_.signum is not None and not run_.raised:
            run_.raised = True
            if code == 0:  # pip had done its part: the signal stops what comes next
                raise Interrupted(run_.current(), 128 + run_.signum)
            raise Interrupted(label, code)
    return code


def _wait(
    run_: _Run, proc: subprocess.Popen[bytes], before: float, poll: Callable[[], None] | None
) -> int:
    """pip's exit code; after a signal, at most ``GRACE`` more seconds, then stop it."""
    tick = 0.05 if poll is not None else 0.25
    while True:
        try:
            return proc.wait(timeout=tick)
        except subprocess.TimeoutExpired:
            pass
        if run_.signum is None:
            if poll is not None:
                poll()
            continue
        if run_.at < before:  # the signal came before pip existed: pip never saw it
            with suppress(OSError):
                proc.send_signal(run_.signum)
        deadline = max(run_.at, before) + GRACE
        while time.monotonic() < deadline:
            try:
                return proc.wait(timeout=tick)
            except subprocess.TimeoutExpired:
                pass
        return _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Terminate, then kill: the child is gone when this returns."""
    if proc.poll() is not None:
        return proc.returncode
    with suppress(OSError):
        proc.terminate()
    try:
        return proc.wait(timeout=KILL_AFTER)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _pump(stream: IO[bytes] | None, each_line: Callable[[bytes], None]) -> threading.Thread:
    def copy() -> None:
        assert stream is not None
        with stream:
            for line in stream:
                each_line(line)

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


class Helper:
    """A child in a process group of its own, fed through its stdin, answering on stdout.

    Ctrl-C never reaches it: ``finish`` waits for its answer, and ``kill`` (after
    an interrupt, an error, or when the answer is no longer wanted) kills the
    whole group and returns once nothing of it runs any more.
    """

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str] | None, label: str, stderr: IO[bytes]
    ) -> None:
        with _deferred(then_raise=False) as run_:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                pass_fds=_inherited,
            )
        self._label = label
        self._done = False
        if _main_thread():
            run_.phases.append(label)
            if run_.signum is not None and not run_.raised and run_.deferring == 0:
                self.kill()  # Ctrl-C came while it started: it is not wanted any more
                raise run_.interrupted()

    def send(self, data: bytes) -> None:
        """Write to its input; ``OSError`` when it is gone."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            raise BrokenPipeError("the helper's input is closed")
        stdin.write(data)
        stdin.flush()

    def finish(self) -> tuple[int, bytes]:
        """Send the end marker; its exit status and everything it wrote."""
        with suppress(OSError):
            self.send(END)
        try:
            stdout, _ = self._proc.communicate()
        except OSError:
            stdout = b""
            self._proc.wait()
        self._forget()
        return self._proc.returncode, stdout

    def kill(self) -> None:
        """Kill its whole group (a pool's workers too) and reap it: nothing of it runs on.

        Every member inherited its stdout, so the end of that stream is the proof;
        it is waited for at most ``KILL_AFTER`` seconds.
        """
        if self._done:
            return
        if self._proc.returncode is None:  # not reaped: its pid is still its group's
            with suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=KILL_AFTER)
        stdout = self._proc.stdout
        if stdout is not None:
            _drain(stdout.fileno(), time.monotonic() + KILL_AFTER)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        self._forget()

    def _forget(self) -> None:
        if not self._done and _main_thread():
            with suppress(ValueError):
                _run.phases.remove(self._label)
        self._done = True


def _drain(fd: int, deadline: float) -> None:
    """Read ``fd`` to its end (every writer gone) or until ``deadline``."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            ready, _, _ = select.select([fd], [], [], left)
            if ready and not os.read(fd, 1 << 16):
                return
        except InterruptedError:
            continue
        except OSError:
            return


__all__ = ["GRACE", "Helper", "Interrupted", "children_inherit", "handling_interrupts", "run"]
