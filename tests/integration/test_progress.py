"""Long phases show progress on a terminal and one line each elsewhere (issue 11, item 8).

pipfresh runs as a process with its stderr on a real pseudo-terminal (``os.openpty``)
or a pipe; the assertions are on the lines it leaves, never on timings.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, store_env
from pipfresh.cli.progress import Progress
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

PHASES = ("obtaining", "unpacking", "compiling")


def _publish(index: Any, dist_dir: Path) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib"]),
        build_wheel(
            dist_dir, "lib", "2.0", modules={f"lib/m{i}.py": f"X = {i}\n" for i in range(3)}
        ),
    )


def _argv(index: Any, venv: Any, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python),
            *index_args(index), *extra, "app"]  # fmt: skip


def _on_a_terminal(argv: list[str], **env: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe); what each received."""
    controller, terminal = os.openpty()
    read: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            read.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
            env={**store_env(**env), "TERM": "xterm", "COLUMNS": "200"}, timeout=600,
        )  # fmt: skip
    finally:
        os.close(terminal)
        reader.join(timeout=30)
        os.close(controller)
    text = b"".join(read).decode("utf-8", "replace").replace("\r\n", "\n")  # the tty's ONLCR
    return proc.returncode, proc.stdout.decode(), text


def _left_on_screen(text: str) -> list[str]:
    """The lines a terminal shows at the end: each line's text after its last rewrite."""
    return [line.rpartition("\r")[2].replace("\x1b[K", "") for line in text.split("\n")]


def _drawn(text: str) -> list[str]:
    """Every state the rewritten line went through."""
    return [part.replace("\x1b[K", "") for part in text.replace("\n", "\r").split("\r") if part]


def test_a_terminal_sees_counts_rewritten_in_one_line_and_a_done_line_per_phase(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    _publish(index, dist_dir)
    code, stdout, text = _on_a_terminal(_argv(index, make_venv(pip=None)))
    assert code == 0, text
    screen = [line for line in _left_on_screen(text) if line.startswith("pipfresh: ")]
    done = [line for line in screen if line.endswith(" ... done")]
    assert sorted(done) == sorted(
        [f"pipfresh: {phase} 2 wheels ... done" for phase in PHASES]
        + ["pipfresh: installing 2 wheels ... done"]
    ), screen
    assert done[-1] == "pipfresh: installing 2 wheels ... done"  # after the store is filled
    assert screen[-1].startswith("pipfresh: installed 2 "), screen  # the summary, last
    drawn = _drawn(text)
    for phase in ("obtaining", "unpacking", "installing"):  # counted: every count shown
        for count in (0, 1):
            assert any(f"{phase} {count}/2 wheels" in state for state in drawn), (phase, drawn)
    assert any("compiling 2 wheels" in s and " ... done" not in s for s in drawn), drawn
    assert "pipfresh" not in stdout  # stdout is pip's and the JSON's, never progress

    # A second venv: everything is in the store, only installing is a phase.
    code, _stdout, text = _on_a_terminal(_argv(index, make_venv(pip=None)))
    assert code == 0, text
    screen = [line for line in _left_on_screen(text) if line.endswith(" ... done")]
    assert screen == ["pipfresh: installing 2 wheels ... done"], text


def test_without_a_terminal_each_phase_is_one_line(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    _publish(index, dist_dir)
    proc = subprocess.run(
        _argv(index, make_venv(pip=None)), capture_output=True, text=True, env=store_env(),
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("pipfresh: ")]
    assert ours[:-1] == [f"pipfresh: {phase} 2 wheels" for phase in PHASES] + [
        "pipfresh: installing 2 wheels"
    ], proc.stderr
    assert ours[-1].startswith("pipfresh: installed 2 "), ours


@pytest.mark.parametrize(
    "quieter", [("-q",), ("--progress-bar", "off")], ids=["-q", "progress-bar-off"]
)
def test_quiet_on_a_terminal_is_silent_and_pips_bars_off_gives_plain_lines(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, quieter: tuple[str, ...]
) -> None:
    _publish(index, dist_dir)
    code, _stdout, text = _on_a_terminal(_argv(index, make_venv(pip=None), *quieter))
    assert code == 0, text
    ours = [line for line in text.split("\n") if "pipfresh: " in line]
    if quieter == ("-q",):
        assert ours == [], text
    else:
        assert "\r" not in text and "\x1b" not in text, text
        assert ours[:4] == [f"pipfresh: {p} 2 wheels" for p in [*PHASES, "installing"]], text


def test_summary_json_on_stdout_stays_json_while_a_terminal_shows_progress(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    _publish(index, dist_dir)
    code, stdout, text = _on_a_terminal(_argv(index, make_venv(pip=None), "--summary-json", "-"))
    assert code == 0, text
    assert json.loads(stdout)["installer"] == "store"
    assert "pipfresh: installing 2 wheels ... done" in _left_on_screen(text), text


class _Terminal(io.StringIO):
    """What a renderer needs of a terminal, kept as text."""

    def isatty(self) -> bool:
        return True


def test_a_phase_cut_short_leaves_no_done_line_and_clears_its_own() -> None:
    """Ctrl-C (or an error) in a phase: the rewritten line is cleared for the error's line."""
    out = _Terminal()
    progress = Progress.for_run(False, [], {"TERM": "xterm"}, out)
    with progress.phase("installing", 1, "wheel") as one:
        one.advance()
    with pytest.raises(KeyboardInterrupt), progress.phase("unpacking", 3, "wheel") as three:
        three.advance()
        raise KeyboardInterrupt
    text = out.getvalue()
    assert _left_on_screen(text) == ["pipfresh: installing 1 wheel ... done", ""], text
    assert "pipfresh: unpacking 1/3 wheels" in _drawn(text) and text.endswith("\r\x1b[K"), text
    assert "done" not in text.rpartition("\n")[2]


def test_a_dumb_terminal_gets_plain_lines() -> None:
    out = _Terminal()
    with Progress.for_run(False, [], {"TERM": "dumb"}, out).phase("compiling", 2, "wheel", False):
        pass
    assert out.getvalue() == "pipfresh: compiling 2 wheels\n"
