"""CI cache keys, and partition locks between real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipfresh.cache import lock
from pipfresh.ci import keys
from pipfresh.errors import LockTimeout, PipfreshError

PID = "cp312-cp312-manylinux_2_36_x86_64"


def test_key_has_layout_os_partition_and_hash(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("requests==2.32.3\n")
    key = keys.compute(PID, [req], tmp_path)
    assert key.key.startswith(key.restore_prefix)
    assert key.restore_prefix == f"pipfresh-1-{keys.os_name()}-{PID}-"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key.key)
    assert key.files == ("requirements.txt",)


def test_key_follows_content_and_never_crosses_partitions(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("a==1\n")
    first = keys.compute(PID, [req], tmp_path)
    req.write_text("a==2\n")
    second = keys.compute(PID, [req], tmp_path)
    other = keys.compute("cp311-cp311-manylinux_2_36_x86_64", [req], tmp_path)
    assert first.key != second.key and first.restore_prefix == second.restore_prefix
    assert not other.key.startswith(first.restore_prefix)


def test_discover_finds_dependency_files(tmp_path: Path) -> None:
    for name in (
        "requirements.txt",
        "requirements-dev.txt",
        "constraints.txt",
        "pyproject.toml",
        "tox.ini",
        "README.md",
    ):
        (tmp_path / name).write_text("x")
    found = [p.name for p in keys.discover(tmp_path)]
    assert "README.md" not in found
    assert {
        "requirements.txt",
        "requirements-dev.txt",
        "constraints.txt",
        "pyproject.toml",
        "tox.ini",
    } == set(found)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipfreshError, match="cannot read"):
        keys.compute(PID, [tmp_path / "nope.txt"], tmp_path)


HOLDER = """
import sys
from pathlib import Path
from pipfresh.cache import lock
with lock.hold(Path(sys.argv[1]), shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes its input or kills it
"""


def _holder(path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_shared_locks_coexist_and_exclusive_waits(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    reader = _holder(path, "shared")
    try:
        with lock.hold(path, shared=True, timeout=1):
            pass  # a second reader gets in at once
        with (
            pytest.raises(LockTimeout, match="PIPFRESH_LOCK_TIMEOUT"),
            lock.hold(path, shared=False, timeout=0.3),
        ):
            pass
    finally:
        reader.kill()
        reader.wait()
    # The kernel releases a killed holder's lock: no stale lock remains, not even briefly.
    with lock.hold(path, shared=False, timeout=0):
        pass
