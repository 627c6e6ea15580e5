"""Ctrl-C at every phase of a cold store install: a prompt exit with pip's status and one
line, the partition lock free at once, no process of the run left, nothing the next run keeps.

Each phase is recognised from outside (pip's dry run asking the index, ``pip wheel``
asking it, bytecode appearing in the store's staging after pip is done), so the
signal lands in that phase however loaded the machine is. The signal goes to the
whole process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import index_args, installed_version
from pipfresh.cache import lock
from pipfresh.testing.dists import build_sdist, build_wheel

MARK = "PIPFRESH_TEST_RUN"  # every process of a run inherits it: how orphans are found
HEAVY = ("heavy0", "heavy1", "heavy2")
_FUNCTIONS = "".join(
    f"def f{i}(a, b=1, *c, **d):\n    x = [a + b * {i} for _ in range(3)]\n"
    f"    return {{'k{i}': x, 'c': c, 'd': d}}\n"
    for i in range(200)
)


def publish_workload(index: Any, dist_dir: Path, modules: int) -> None:
    """Three wheels of many modules (compiling them takes seconds) and an sdist to build."""
    for name in HEAVY:
        files = {f"{name}/__init__.py": "X = 1\n"}
        files.update({f"{name}/m{i}.py": _FUNCTIONS for i in range(modules)})
        index.publish(build_wheel(dist_dir, name, "1.0", modules=files))
    index.publish(
        build_sdist(dist_dir, "built", "0.3"),
        build_wheel(dist_dir, "app", "1.0", requires=[*HEAVY, "built"]),
    )


@dataclass(frozen=True)
class Proc:
    pid: int
    pgid: int
    cmdline: bytes


def run_processes(mark: str, *, zombies: bool = False) -> list[Proc]:
    """Processes carrying ``MARK=mark`` in their environment; zombies only if asked."""
    needle = f"{MARK}={mark}".encode() + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fp:
                if needle not in fp.read() + b"\0":
                    continue
            with open(f"/proc/{entry.name}/stat") as fp:
                fields = fp.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry.name}/cmdline", "rb") as fp:
                cmdline = fp.read()
        except OSError:
            continue
        if zombies or fields[0] != "Z":
            found.append(Proc(int(entry.name), int(fields[2]), cmdline))
    return found


def _pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` is still pending for ``pid`` (not delivered yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    bit = 1 << (signum - 1)
    return any(
        int(line.split()[1], 16) & bit
        for line in status.splitlines()
        if line.startswith(("SigPnd:", "ShdPnd:"))
    )


def _wait_until(what: str, done: Callable[[], bool], within: float = 60.0) -> None:
    """Poll ``done`` until it holds; fail after ``within`` seconds (a bound, not a figure)."""
    import time

    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def _staging_pycs(root: Path) -> bool:
    for store in root.glob("partitions-v1/*/pipfresh/store-v1"):
        for tmp in store.glob(".tmp-*"):
            if any(tmp.glob("tree/*/__pycache__/*.pyc")):
                return True
    return False


@dataclass
class Watch:
    """What the test has seen of one run so far."""

    proc: subprocess.Popen[str]
    mark: str
    root: Path
    index: Any
    seen: dict[str, int] = field(default_factory=dict)

    def pips(self, flag: bytes) -> list[Proc]:
        """pip with ``flag``, until pipfresh has reaped it."""
        return [
            p
            for p in run_processes(self.mark, zombies=True)
            if p.pgid == self.proc.pid and b"pip" in p.cmdline and flag in p.cmdline
        ]

    def asked_since_seen(self, name: str, flag: bytes) -> bool:
        """pip with ``flag`` runs and has asked the index since it was first seen."""
        if not self.pips(flag):
            return False
        requests = self.index.counters().total_requests
        first = self.seen.setdefault(name, requests)
        return requests > first


def in_dry_run(w: Watch) -> bool:
    return w.asked_since_seen("dry run", b"--dry-run")


def in_pip_wheel(w: Watch) -> bool:
    return w.asked_since_seen("pip wheel", b"--wheel-dir")


def compiling_after_pip(w: Watch) -> bool:
    """``pip wheel`` ran and is done; the store's staging is getting bytecode."""
    if w.pips(b"--wheel-dir"):
        w.seen["pip wheel"] = 1
        return False
    return "pip wheel" in w.seen and _staging_pycs(w.root)


PHASES: dict[str, tuple[Callable[[Watch], bool], str, int | None]] = {
    # name: (when to press Ctrl-C, the phase pipfresh names, its exit status: pip's)
    "dry run": (in_dry_run, "pip's dry run", 1),
    "pip wheel": (in_pip_wheel, "pip wheel", 1),
    "compiling": (compiling_after_pip, "byte-compiling for the store", 130),
    "pip wheel, twice": (in_pip_wheel, "pip wheel", None),  # pip's status, 1 or 130
    "compiling, twice": (compiling_after_pip, "byte-compiling for the store", 130),
}


# What a pipe gets of the store path's progress (``progress.PlainRenderer``): one line a phase.
_PHASE_LINE = r"pipfresh: (obtaining|unpacking|compiling|installing) \d+ wheels?"


def _leftovers(root: Path) -> list[str]:
    """Temporary files and store staging anywhere under the cache root."""
    found = [str(p) for p in root.rglob("*") if p.name.endswith(".tmp")]
    found += [str(p) for p in root.glob("partitions-v1/*/pipfresh/store-v1/.*")]
    return found


def _kill_all(mark: str) -> None:
    for p in run_processes(mark):
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_at_every_phase_of_a_cold_store_install(
    phase: str, index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    when, label, status = PHASES[phase]
    twice = phase.endswith("twice")
    publish_workload(index, dist_dir, modules=150)
    index.latency = 0.05  # pip's dry run and pip wheel each ask for seconds
    mark = uuid.uuid4().hex
    root = tmp_path / "cache"
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {
        **os.environ,
        "PIPFRESH_CACHE_DIR": str(root),
        "PIPFRESH_INSTALLER": "store",
        MARK: mark,
    }
    venv = make_venv(py311)
    argv = ["install", "--python", venv.python, *index_args(index), "app"]
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipfresh", *map(str, argv), "--summary-json", str(summary)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "TMPDIR": str(scratch)},
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    watch = Watch(proc, mark, root, index)
    try:
        _wait_until(phase, lambda: proc.poll() is not None or when(watch))
        assert proc.poll() is None, f"the run ended before {phase}: {proc.communicate()}"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        if twice:
            _wait_until("the first Ctrl-C delivered", lambda: not _pending(proc.pid, 2))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pipfresh did not exit within 10 s of Ctrl-C ({phase})")
        # Nothing of the run goes on: no pip, no compiler, no worker of its pool.
        _wait_until("every process of the run gone", lambda: not run_processes(mark), 5)
    finally:
        _kill_all(mark)

    said = [line for line in err.splitlines() if line.startswith("pipfresh:")]
    assert said[-1:] == [f"pipfresh: interrupted ({label})"], err
    assert all(re.fullmatch(_PHASE_LINE, line) for line in said[:-1]), err  # progress, no pipe
    if twice:  # pip's own cleanup, stopped by the second Ctrl-C, may print a traceback
        assert not re.search(r'File "[^"]*[/\\]pipfresh[/\\]', err), err
    else:
        assert "Traceback" not in err, err
    if status is None:
        assert proc.returncode in (1, 130), err
    else:
        assert proc.returncode == status, err
    if status == 1:
        assert "Operation cancelled by user" in err  # pip's own word, and its status
    data = json.loads(summary.read_text())
    assert (data["exit_code"], data["interrupted"]) == (proc.returncode, label)
    # The partition is free at once: a prune (exclusive) would start now.
    (lock_file,) = root.glob("locks-v1/*.lock")
    with lock.hold(lock_file, shared=False, timeout=5):
        pass
    assert [p for p in root.glob("partitions-v1/*/pipfresh/store-v1/.*")] == []
    # pipfresh's own temporary directories are gone. pip's may not be: Ctrl-C reaches a
    # build hook's process too, which can still write into the directory pyproject_hooks
    # is removing (tmpXXXXXXXX), as it does without pipfresh; a second Ctrl-C may stop
    # pip's cleanup itself.
    assert [p.name for p in scratch.iterdir() if p.name.startswith("pipfresh-")] == []
    if not twice:
        assert [p.name for p in scratch.iterdir() if p.name.startswith("pip-")] == []

    # The next run removes whatever the interrupted one left, and leaves nothing itself.
    index.latency = 0.0
    again = make_venv(py311)
    scratch2 = tmp_path / "tmpdir2"
    scratch2.mkdir()
    argv[2] = str(again.python)
    done = subprocess.run(
        [sys.executable, "-m", "pipfresh", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(scratch2)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert {n: installed_version(again.python, n) for n in [*HEAVY, "built", "app"]} == {
        **dict.fromkeys(HEAVY, "1.0"),
        "built": "0.3",
        "app": "1.0",
    }
    assert _leftovers(root) == []
    assert list(scratch2.iterdir()) == []
    pruned = subprocess.run(
        [sys.executable, "-m", "pipfresh", "cache", "prune", "--all", "--json"],
        capture_output=True,
        text=True,
        env={**env, "PIPFRESH_LOCK_TIMEOUT": "5"},
        timeout=60,
    )
    assert pruned.returncode == 0, pruned.stderr
    (removed,) = (r["removed"] for r in json.loads(pruned.stdout).values())
    assert "temporary" not in removed and "broken" not in removed, removed
