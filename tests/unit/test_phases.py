"""phases.Phases: a phase timed inside another is taken out of it; none counts twice."""

from __future__ import annotations

import time

import pytest

from pipfresh.phases import Phases


def _sleep(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(end - time.perf_counter())


def test_a_nested_phase_is_taken_out_of_the_one_around_it() -> None:
    phases = Phases()
    started = time.perf_counter()
    with phases.timed("resolve"):
        _sleep(0.02)
        with phases.timed("prefetch"):
            _sleep(0.05)
    took = time.perf_counter() - started
    seconds = phases.seconds()
    assert list(seconds) == ["resolve", "prefetch"]  # the order they started in
    assert seconds["prefetch"] >= 0.05
    assert 0.02 <= seconds["resolve"] < 0.05  # its own time only
    assert sum(seconds.values()) == pytest.approx(took, abs=0.002)


def test_a_phase_timed_twice_adds_up_and_one_added_counts_in_its_parent() -> None:
    phases = Phases()
    phases.add("start", 0.5)
    for _ in range(2):
        with phases.timed("obtain"):
            _sleep(0.01)
    with phases.timed("link"):
        phases.add("pip", 0.25)  # measured elsewhere, inside "link"
    seconds = phases.seconds()
    assert seconds["start"] == 0.5 and seconds["pip"] == 0.25
    assert seconds["obtain"] >= 0.02
    assert seconds["link"] < 0.01  # pip's quarter second is not link's


def test_a_phase_that_raises_is_still_counted() -> None:
    phases = Phases()
    with pytest.raises(KeyboardInterrupt), phases.timed("obtain"):
        _sleep(0.01)
        raise KeyboardInterrupt
    with phases.timed("after"):
        pass
    assert phases.seconds()["obtain"] >= 0.01
    assert phases.seconds()["after"] < 0.01  # the stack was unwound
