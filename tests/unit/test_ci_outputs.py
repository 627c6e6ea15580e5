"""ci.outputs on plain data and a synthetic partition: step-output syntax and the state digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipfresh.ci import outputs
from pipfresh.ci.keys import CacheKey
from pipfresh.errors import PipfreshError
from pipfresh.layout import CacheRoot, Partition


def _partition(tmp_path: Path) -> Partition:
    return CacheRoot(tmp_path).partition("cp312-abc")


def _put(partition: Partition, rel: str, size: int) -> None:
    path = partition.pip_cache / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_github_output_only_on_github_actions(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert outputs.github_output({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": out}) == Path(out)
    assert outputs.github_output({"GITHUB_OUTPUT": out, "CI": "true"}) is None
    assert outputs.github_output({"GITHUB_ACTIONS": "true"}) is None


def test_github_and_dotenv_lines() -> None:
    values = {"key": "k-1", "restore-key": "k-"}
    assert outputs.github_lines(values) == "key=k-1\nrestore-key=k-\n"
    assert outputs.dotenv_lines(values) == "PIPFRESH_KEY=k-1\nPIPFRESH_RESTORE_KEY=k-\n"
    with pytest.raises(PipfreshError, match="newline"):
        outputs.dotenv_lines({"key": "a\nb"})


def test_append_never_truncates(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("before=1\n")
    outputs.append(target, "after=2\n")
    assert target.read_text() == "before=1\nafter=2\n"
    with pytest.raises(PipfreshError, match="cannot write CI outputs"):
        outputs.append(tmp_path / "missing" / "out", "x=1\n")


def test_state_follows_what_pip_can_reuse(tmp_path: Path) -> None:
    partition = _partition(tmp_path)
    assert outputs.state(partition) == "empty"
    _put(partition, "http-v2/a/b/entry.body", 10)
    _put(partition, "wheels/x/pkg-1-py3-none-any.whl", 5)
    first = outputs.state(partition)
    assert first.startswith("2-")
    _put(partition, "wheels/x/partial.tmp", 3)  # a temporary file is not content
    _put(partition, "selfcheck/state.json", 3)  # nor is what pip never reuses
    assert outputs.state(partition) == first
    _put(partition, "http-v2/a/b/entry.body", 11)  # the same path, another size
    assert outputs.state(partition) not in (first, "empty")


def test_outputs_name_key_prefix_dir_partition_and_state(tmp_path: Path) -> None:
    partition = _partition(tmp_path)
    values = outputs.outputs(CacheKey("k-1", "k-", ("requirements.txt",)), partition)
    assert values == {
        "key": "k-1",
        "restore-key": "k-",
        "dir": str(partition.path),
        "partition": "cp312-abc",
        "state": "empty",
    }
