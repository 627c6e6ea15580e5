"""Where a run's time went: wall seconds per phase, for the summary and its JSON.

A slow run should say why without a profiler: checking the cache, asking the
index ahead (prefetch), resolving, checking the store, obtaining wheels,
compiling, linking. A phase timed inside another is taken out of it (as a
profiler's own time), so the phases never count a second twice and add up to
the run, less the start (imports, finding the interpreter):

    phases = Phases()
    with phases.timed("resolve"):
        with phases.timed("prefetch"):
            ...          # counted as prefetch only
        ...              # counted as resolve
    phases.seconds()     # {"resolve": ..., "prefetch": ...}

Phases overlapping in threads (unpacking while ``pip wheel`` downloads) are
timed where the run waits for them: "compile" is what is left of unpacking and
compiling once every wheel has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Wall time per phase name, a phase's nested phases taken out of it."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._nested: list[float] = []  # per open phase: the time of phases inside it

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Count the time inside, less that of phases timed within, towards ``name``."""
        self._seconds.setdefault(name, 0.0)
        started = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            took = time.perf_counter() - started
            inner = self._nested.pop()
            self._seconds[name] += took - inner
            if self._nested:
                self._nested[-1] += took

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` measured elsewhere towards ``name`` (a run's start)."""
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds
        if self._nested:
            self._nested[-1] += seconds

    def seconds(self) -> dict[str, float]:
        """Each phase's seconds, in the order they first started, to the millisecond."""
        return {name: round(took, 3) for name, took in self._seconds.items()}
