"""Progress of a run's long phases (obtaining, unpacking, compiling, installing N wheels).

Like pip's progress bars: on a terminal one line on stderr is rewritten as the
counts move, and each phase leaves a ``... done`` line; anywhere else (a CI log,
a pipe) each phase prints one line as it starts; ``-q`` prints nothing. Never
stdout: ``--summary-json -`` keeps it for the JSON.

    progress = Progress.for_run(quiet=False, pip_args=args, environ=os.environ)
    with progress.phase("unpacking", len(wheels), "wheel") as unpacking:
        for wheel in wheels:
            unpack(wheel)
            unpacking.advance()

Phases may overlap (wheels unpack while others download); ``advance`` may be
called from any thread.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from pipfresh.pip.config import PipConfig, progress_bar


@dataclass
class Phase:
    """One long phase: ``total`` things (``unit``, singular), ``done`` of them so far.

    A context manager: the block's end ends it (``... done``), an exception
    abandons it; it also ends at its last ``advance``.
    """

    label: str
    total: int
    unit: str
    counting: bool  # False: no count to show, only that it runs
    progress: Progress
    done: int = 0
    over: bool = False

    def advance(self, n: int = 1) -> None:
        """``n`` more done; the phase ends when all are (its ``done`` line then)."""
        self.progress._advance(self, n)

    def abandon(self) -> None:
        """End short: the line is cleared, no ``done`` (an error follows)."""
        self.progress._abandon(self)

    def __enter__(self) -> Phase:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.progress._end(self)
        else:
            self.abandon()

    def text(self) -> str:
        return f"{self.label} {self.total} {self._units()}"

    def status(self) -> str:
        if not self.counting:
            return self.text()
        return f"{self.label} {self.done}/{self.total} {self._units()}"

    def _units(self) -> str:
        return self.unit if self.total == 1 else self.unit + "s"


class Renderer:
    """Draws phases. This one draws nothing (``-q``)."""

    def started(self, phase: Phase, active: Sequence[Phase]) -> None:
        """``phase`` began; ``active`` are all the phases running, it included."""

    def advanced(self, active: Sequence[Phase]) -> None:
        """A count moved."""

    def finished(self, phase: Phase, active: Sequence[Phase]) -> None:
        """``phase`` ended, all done; ``active`` are those still running."""

    def abandoned(self, active: Sequence[Phase]) -> None:
        """A phase stopped short (an error, Ctrl-C): what follows is the error's."""


class PlainRenderer(Renderer):
    """One line per phase, as it starts: what a CI log or a pipe gets."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def started(self, phase: Phase, active: Sequence[Phase]) -> None:
        self.stream.write(f"pipfresh: {phase.text()}\n")
        self.stream.flush()


class TerminalRenderer(Renderer):
    """One line rewritten in place with every running phase's count; a phase that
    ends leaves ``pipfresh: <phase> ... done`` above it, as pip's spinners do."""

    _CLEAR = "\r\x1b[K"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._drawn = False

    def started(self, phase: Phase, active: Sequence[Phase]) -> None:
        self._draw(active)

    def advanced(self, active: Sequence[Phase]) -> None:
        self._draw(active)

    def finished(self, phase: Phase, active: Sequence[Phase]) -> None:
        self.stream.write(f"{self._CLEAR}pipfresh: {phase.text()} ... done\n")
        self._drawn = False
        self._draw(active)

    def abandoned(self, active: Sequence[Phase]) -> None:
        if self._drawn:
            self.stream.write(self._CLEAR)
            self.stream.flush()
        self._drawn = False

    def _draw(self, active: Sequence[Phase]) -> None:
        if not active:
            self.stream.flush()
            return
        line = "pipfresh: " + " · ".join(p.status() for p in active)
        self.stream.write(self._CLEAR + line[: self._width() - 1])
        self.stream.flush()
        self._drawn = True

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError):
            return 80


class Progress:
    """The run's phases, drawn by one renderer; safe to advance from any thread."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._active: list[Phase] = []
        self._lock = threading.Lock()

    @classmethod
    def silent(cls) -> Progress:
        return cls(Renderer())

    @classmethod
    def for_run(
        cls,
        quiet: bool,
        pip_args: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
        prefix: str | None = None,
        config: PipConfig | None = None,
    ) -> Progress:
        """Silent with ``-q``; a rewritten line on a terminal, unless pip's bars are off
        (``--progress-bar off``, ``PIP_PROGRESS_BAR=off``, ``progress-bar = off`` in pip's
        configuration, read with the target's ``prefix``) or ``TERM=dumb``; else one line
        per phase."""
        if quiet:
            return cls.silent()
        out = stream if stream is not None else sys.stderr
        env = os.environ if environ is None else environ
        plain = progress_bar(pip_args, env, prefix, config) == "off" or env.get("TERM") == "dumb"
        try:
            terminal = out.isatty()
        except (OSError, ValueError):
            terminal = False
        return cls(TerminalRenderer(out) if terminal and not plain else PlainRenderer(out))

    def phase(self, label: str, total: int, unit: str, counting: bool = True) -> Phase:
        """A phase, started now: ``with progress.phase(...) as phase:``."""
        started = Phase(label, total, unit, counting, self)
        with self._lock:
            self._active.append(started)
            self.renderer.started(started, list(self._active))
        return started

    def _abandon(self, phase: Phase) -> None:
        with self._lock:
            if phase.over:
                return
            phase.over = True
            self._active.remove(phase)
            self.renderer.abandoned(list(self._active))

    def _advance(self, phase: Phase, n: int) -> None:
        with self._lock:
            if phase.over or n <= 0:
                return
            phase.done = min(phase.total, phase.done + n)
            if phase.done < phase.total:
                self.renderer.advanced(list(self._active))
                return
        self._end(phase)

    def _end(self, phase: Phase) -> None:
        with self._lock:
            if phase.over:
                return
            phase.over = True
            phase.done = phase.total
            self._active.remove(phase)
            self.renderer.finished(phase, list(self._active))


__all__ = ["Phase", "PlainRenderer", "Progress", "Renderer", "TerminalRenderer"]
