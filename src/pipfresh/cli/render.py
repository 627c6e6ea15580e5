"""What a run shows: notes while it runs, then its summary line and JSON; one size unit.

Everything here goes to stderr, so stdout stays pip's (or, with ``--summary-json -``,
the JSON's alone). A run (``session``) prints nothing: it talks through a ``Console``
and returns a ``RunResult``, and ``finish`` prints that result.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipfresh.cli.progress import Progress

if TYPE_CHECKING:
    from pipfresh.cli.summary import Summary
    from pipfresh.pip.config import PipConfig
    from pipfresh.session import RunResult

_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


def human_size(size: float, unit: str | None = None) -> str:
    """``0 B``, ``12.3 kB``, ``4.5 MB``: powers of 1000, as pip prints sizes.

    ``unit`` fixes the unit, for a column of figures or a line of one shape::

        >>> human_size(12_345), human_size(2_500_000, "MB")
        ('12.3 kB', '2.5 MB')
    """
    if unit is None:
        unit = next((u for u in ("B", "kB", "MB") if size < 1000 * _UNITS[u]), "GB")
    value = size / _UNITS[unit]
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


class Console:
    """A run's live lines on stderr (``pipfresh.console.Console``); notes are silenced by ``-q``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"pipfresh: {text}", file=sys.stderr)

    def warning(self, text: str) -> None:
        print(f"pipfresh: warning: {text}", file=sys.stderr)

    def waiting(self, partition: str) -> None:
        print(
            f"pipfresh: waiting for another pipfresh to finish with {partition}...", file=sys.stderr
        )

    def progress(
        self,
        pip_args: list[str],
        env: Mapping[str, str],
        prefix: str,
        config: PipConfig | None = None,
    ) -> Progress:
        return Progress.for_run(self.quiet, pip_args, env, prefix=prefix, config=config)

    def line(self, text: str) -> None:
        print(text, flush=True)

    def relay(self, data: bytes, *, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        stream.flush()  # what was printed as text comes first
        stream.buffer.write(data)
        stream.buffer.flush()


def finish(result: RunResult, console: Console, summary_json: str | None) -> int:
    """Print what a run left to say: its notes, then its summary line (or where Ctrl-C
    stopped it) and JSON; the exit status is the run's."""
    for text in result.notes:
        console.note(text)
    summary = result.summary
    if result.interrupted is not None:
        if summary is not None and summary_json:
            write_json(summary, summary_json)
        print(f"pipfresh: interrupted ({result.interrupted})", file=sys.stderr)
        return result.status
    if summary is not None:
        if not console.quiet:
            print(summary_line(summary), file=sys.stderr)
        if summary_json:
            write_json(summary, summary_json)
    return result.status


def summary_line(s: Summary) -> str:
    """The one line for people: what was installed, reused, downloaded, built, and where."""
    parts = [f"{'would install' if s.dry_run else 'installed'} {s.installed}"]
    parts.append(f"reused {s.reused} ({human_size(s.reused_bytes)})")
    downloaded = f"downloaded {s.downloaded} ({human_size(s.downloaded_bytes)})"
    if s.metadata_downloaded:
        downloaded += f" + {s.metadata_downloaded} metadata"
    parts.append(downloaded)
    if s.uncached:
        parts.append(
            f"{s.uncached} fetched but not cached (the index sent no caching headers, "
            "or it is plain http:// without --trusted-host)"
        )
    built = f"built {s.built}"
    if s.reused_built:
        built += f", {s.reused_built} built earlier"
    parts.append(built)
    parts.append(_index_pages(s))
    if s.dropped:
        parts.append(f"dropped {s.dropped} broken cache entries")
    where = s.partition if s.cache == "managed" else f"cache: {s.cache}"
    parts.append(f"partition {where}")
    parts.append(f"python {s.python} ({s.python_source})")
    reason = f" ({s.installer_reason})" if s.installer_reason else ""
    parts.append(f"installer {s.installer}{reason}")
    if s.resolution:
        parts.append(f"resolution {s.resolution}")
    parts.append(f"{s.elapsed:.1f}s{_phases(s.phases)}")
    head = "pipfresh: " if s.exit_code == 0 else f"pipfresh: pip exited {s.exit_code}; "
    return head + " · ".join(parts)


def _phases(phases: Mapping[str, float]) -> str:
    """Where the time went, the phases over 10 ms: `` (resolve 0.31s, link 0.20s)``."""
    shown = [f"{name} {took:.2f}s" for name, took in phases.items() if took >= 0.01]
    return f" ({', '.join(shown)})" if shown else ""


def _index_pages(s: Summary) -> str:
    extra = []
    if s.index_changed:
        extra.append(f"{s.index_changed} changed")
    if s.index_new:
        extra.append(f"{s.index_new} new")
    counts = f" ({', '.join(extra)})" if extra else ""
    return f"index pages {s.index_revalidated} revalidated{counts}"


def summary_text(summary: Summary) -> str:
    """The JSON of ``--summary-json``: sorted keys, so runs diff cleanly."""
    return json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n"


def write_json(summary: Summary, target: str) -> None:
    """Write the JSON to ``target``; ``-`` is the stdout that ``stdout_for_json`` kept."""
    text = summary_text(summary)
    if target != "-":
        Path(target).write_text(text, encoding="utf-8")
    elif _json_stdout is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(_json_stdout, "w", encoding="utf-8", closefd=False) as out:
            out.write(text)


_json_stdout: int | None = None  # the real stdout while ``stdout_for_json`` holds it


@contextmanager
def stdout_for_json(target: str | None) -> Iterator[None]:
    """With ``--summary-json -``, stdout carries the JSON alone.

    Everything else written to stdout meanwhile (pip's output, pipfresh's, any
    child's: they inherit the descriptor) goes to stderr, so
    ``pipfresh install ... --summary-json - | jq`` reads valid JSON.
    """
    global _json_stdout
    if target != "-" or _json_stdout is not None:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to keep apart
        yield
        return
    os.dup2(2, 1)
    _json_stdout = saved
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _json_stdout = None
