"""What a CI job needs from pipfresh besides installing: step outputs and a change check.

GitHub Actions reads a step's outputs from the file ``$GITHUB_OUTPUT`` names
(``name=value`` lines, a heredoc for a value with newlines); GitLab CI reads
``NAME=value`` lines from a ``dotenv`` report. ``state`` is a digest of what a
partition holds for pip, so a job can save its cache only when a run changed
something (a CI cache entry is immutable, and saving costs upload time and quota).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pipfresh.cache import fs
from pipfresh.ci.keys import CacheKey
from pipfresh.errors import PipfreshError
from pipfresh.layout import STATE_DIRS, Partition


def github_output(environ: Mapping[str, str]) -> Path | None:
    """The step-output file of a GitHub Actions step, when running in one.

    Told by the runner's own variables, not ``CI`` (tox hides ``CI`` from its envs).
    """
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_OUTPUT"):
        return Path(environ["GITHUB_OUTPUT"])
    return None


def outputs(key: CacheKey, partition: Partition) -> dict[str, str]:
    """The values a cache step needs: the key, its restore prefix, the directory, the state."""
    return {
        "key": key.key,
        "restore-key": key.restore_prefix,
        "dir": str(partition.path),
        "partition": partition.id,
        "state": state(partition),
    }


def github_lines(values: Mapping[str, str]) -> str:
    """``$GITHUB_OUTPUT`` syntax; a value with a newline gets a delimiter it cannot contain."""
    out = []
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            delimiter = f"pipfresh_{secrets.token_hex(8)}"
            out.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            out.append(f"{name}={value}\n")
    return "".join(out)


def dotenv_lines(values: Mapping[str, str], prefix: str = "PIPFRESH_") -> str:
    """GitLab's ``artifacts:reports:dotenv`` syntax: ``PIPFRESH_RESTORE_KEY=...``."""
    out = []
    for name, value in values.items():
        if "\n" in value:
            raise PipfreshError(f"cannot write {name} to a dotenv file: it has a newline")
        out.append(f"{prefix}{name.upper().replace('-', '_')}={value}\n")
    return "".join(out)


def append(path: Path, text: str) -> None:
    """Append to an output file the CI runner reads after the step (never truncate it)."""
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise PipfreshError(f"cannot write CI outputs to {path}: {exc.strerror or exc}") from None


def state(partition: Partition) -> str:
    """A digest of every file pip can reuse in the partition (path, size), or ``empty``.

    Files pip writes are immutable and named by content or URL, so path and size
    tell a change; index pages are in it only when a prune kept them.
    """
    digest = hashlib.sha256()
    count = 0
    for bucket in STATE_DIRS:
        top = partition.pip_cache / bucket
        if not top.is_dir():
            continue
        rows = [
            f"{os.path.relpath(full, partition.pip_cache)}\0{st.st_size}\n"
            for full, st in fs.walk(top)
            if not full.endswith(fs.TEMP_SUFFIX)
        ]
        for row in sorted(rows):
            digest.update(row.encode())
        count += len(rows)
    return f"{count}-{digest.hexdigest()[:16]}" if count else "empty"
