"""cli.render on plain data: the size unit, the summary line, the JSON, what a result prints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pipfresh.cli import render
from pipfresh.cli.summary import Summary
from pipfresh.session import RunResult


@pytest.mark.parametrize(
    ("size", "unit", "shown"),
    [
        (0, None, "0 B"),
        (999, None, "999 B"),
        (1000, None, "1.0 kB"),
        (12_345, None, "12.3 kB"),
        (4_500_000, None, "4.5 MB"),
        (2_000_000_000, None, "2.0 GB"),
        (5_000_000_000_000, None, "5000.0 GB"),
        (1_048_576, "MB", "1.0 MB"),  # powers of 1000, as pip: not 2^20
        (2_500_000, "MB", "2.5 MB"),
        (0, "MB", "0.0 MB"),
    ],
)
def test_human_size_counts_in_powers_of_1000(size: int, unit: str | None, shown: str) -> None:
    assert render.human_size(size, unit) == shown


def _summary(**figures: Any) -> Summary:
    base = Summary(partition="cp312-abc", python="/venv/bin/python", python_source="VIRTUAL_ENV")
    return dataclasses.replace(base, **figures)


def test_summary_line_of_a_quiet_run() -> None:
    line = render.summary_line(_summary(installed=2, reused=1, reused_bytes=1500, elapsed=0.25))
    assert line == (
        "pipfresh: installed 2 · reused 1 (1.5 kB) · downloaded 0 (0 B) · built 0"
        " · index pages 0 revalidated · partition cp312-abc"
        " · python /venv/bin/python (VIRTUAL_ENV) · installer pip · 0.2s"
    )


def test_summary_line_names_every_figure_it_has() -> None:
    line = render.summary_line(
        _summary(
            exit_code=1,
            dry_run=True,
            downloaded=3,
            downloaded_bytes=2_000_000,
            metadata_downloaded=4,
            uncached=1,
            built=1,
            reused_built=2,
            index_revalidated=5,
            index_changed=1,
            index_new=2,
            dropped=3,
            cache="--no-cache-dir",
            installer="store",
            installer_reason="why",
            resolution="reused",
        )
    )
    assert line.startswith("pipfresh: pip exited 1; would install 0 · ")
    for part in (
        "downloaded 3 (2.0 MB) + 4 metadata",
        "1 fetched but not cached",
        "built 1, 2 built earlier",
        "index pages 5 revalidated (1 changed, 2 new)",
        "dropped 3 broken cache entries",
        "partition cache: --no-cache-dir",
        "installer store (why)",
        "resolution reused",
    ):
        assert f" · {part}" in line, part


def test_summary_line_says_where_the_time_went() -> None:
    phases = {"start": 0.12, "cache": 0.004, "resolve": 0.31, "link": 0.2}
    line = render.summary_line(_summary(elapsed=0.64, phases=phases))
    assert line.endswith(" · 0.6s (start 0.12s, resolve 0.31s, link 0.20s)")  # under 10 ms: not


def test_summary_json_is_sorted_and_versioned(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    render.write_json(_summary(installed=1, notes=["a note"]), str(target))
    text = target.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["summary_version"] == 1 and data["installed"] == 1 and data["notes"] == ["a note"]
    assert list(data) == sorted(data) and text == render.summary_text(
        _summary(installed=1, notes=["a note"])
    )


def test_finish_prints_the_line_on_stderr_and_returns_the_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = RunResult(3, _summary(exit_code=3), notes=["later"])
    assert render.finish(result, render.Console(quiet=False), None) == 3
    out, err = capsys.readouterr()
    assert out == ""
    first, second = err.splitlines()
    assert first == "pipfresh: later" and second.startswith("pipfresh: pip exited 3; ")


def test_finish_with_q_prints_nothing_but_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = RunResult(0, _summary(installed=1), notes=["silenced"])
    assert render.finish(result, render.Console(quiet=True), "-") == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["installed"] == 1


def test_finish_of_an_interrupted_run(capsys: pytest.CaptureFixture[str]) -> None:
    summary = _summary(exit_code=130, interrupted="running pip")
    assert render.finish(RunResult(130, summary, "running pip"), render.Console(False), "-") == 130
    out, err = capsys.readouterr()
    assert json.loads(out)["interrupted"] == "running pip"
    assert err == "pipfresh: interrupted (running pip)\n"  # no summary line


def test_finish_of_a_run_stopped_before_it_had_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert render.finish(RunResult(130, interrupted="starting"), render.Console(False), "-") == 130
    assert capsys.readouterr() == ("", "pipfresh: interrupted (starting)\n")


def test_console_lines(capsys: pytest.CaptureFixture[str]) -> None:
    for quiet in (False, True):
        console = render.Console(quiet)
        console.note("a note")
        console.warning("careful")
        console.waiting("cp312-abc")
    out, err = capsys.readouterr()
    said = [
        "pipfresh: warning: careful",
        "pipfresh: waiting for another pipfresh to finish with cp312-abc...",
    ]
    assert out == "" and err.splitlines() == ["pipfresh: a note", *said, *said]
