"""The benchmark harness end to end on a tiny generated corpus, so CI proves it still runs.

Real pip 26.3, real uv, real pipfresh against the loopback index; the figures
checked are the ones that do not depend on the machine's speed: what the index
served, which version of the freshness probe each contender installed, and
that the CI round trip made an archive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEFAULT_PIP, pip_wheel
from pipfresh.testing.dists import build_wheel

REPO = Path(__file__).resolve().parents[2]
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"

pytest.importorskip("zstandard", reason="the bench/test extra provides zstandard")


def _corpus(root: Path) -> tuple[Path, Path]:
    dists = root / "dists"
    build_wheel(dists, "smoke-app", "1.0", requires=["smoke-lib>=1"])
    build_wheel(dists, "smoke-lib", "1.0")
    build_wheel(dists, "smoke-lib", "2.0")
    reqs = root / "requirements.txt"
    reqs.write_text("smoke-app==1.0\nfresh-probe\n")
    return dists, reqs


def run_benchmarks(tmp_path: Path, *options: str) -> None:
    """``python -m benchmarks -n1`` on :func:`_corpus`'s files in ``tmp_path``, no latency."""
    argv = [sys.executable, "-m", "benchmarks", "-n1", f"--corpus={tmp_path / 'dists'}"]
    argv += [f"--requirements={tmp_path / 'requirements.txt'}", f"--python={VERSION}"]
    argv += [f"--pip-wheel={pip_wheel(DEFAULT_PIP)}", "--latency-ms=0", "--no-chart"]
    argv += [f"--work={tmp_path / 'work'}", f"--results={tmp_path / 'results'}", *options]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_harness_runs_every_kind_of_scenario(tmp_path: Path) -> None:
    from benchmarks.pythons import find_python

    if find_python(VERSION) is None:
        pytest.skip(f"the harness finds no CPython {VERSION} (pyenv or PATH)")
    _corpus(tmp_path)
    results = tmp_path / "results"
    run_benchmarks(
        tmp_path,
        "--contenders=pip,uv,pipfresh,pipfresh (pages pruned)",
        "--scenarios=cold,fresh,warm,roundtrip,multi-abi",
        f"--multi-python={VERSION}",
    )

    (data_file,) = results.glob("results-*.json")
    runs = json.loads(data_file.read_text())["runs"]
    by = {(r["scenario"], r["contender"]): r for r in runs}
    assert all(r["exit_code"] == 0 for r in runs)

    cold = by["cold", "pipfresh"]
    assert cold["files"] == 3  # app, lib 2.0, the probe
    assert by["cold", "uv"]["files"] == 3

    # Freshness: 1.1 appears between the filling run and the measured run, inside max-age.
    assert by["fresh", "pipfresh"]["probe"] == "1.1" and not by["fresh", "pipfresh"]["stale"]
    assert by["fresh", "pip"]["probe"] == "1.0" and by["fresh", "pip"]["stale"]
    assert by["fresh", "uv"]["stale"]

    # Warm, older than max-age: every page answers 304, also once pip's copies are pruned
    # (pipfresh's recorded resolution keeps their validators).
    kept, pruned = by["warm", "pipfresh"], by["warm", "pipfresh (pages pruned)"]
    assert kept["index_304"] > 0 and kept["index_200"] == 0 and kept["files"] == 0
    assert pruned["index_304"] == kept["index_304"] and pruned["index_200"] == 0
    assert pruned["files"] == 0

    # multi-abi starts from the first cold run's cache: that run is its first row.
    assert by["multi-abi", "pipfresh"]["extra"]["from_cold"] == 1
    assert by["multi-abi", "pipfresh"]["wall"] == cold["wall"]

    trip = by["roundtrip", "pipfresh"]
    assert trip["extra"]["archive_bytes"] > 0 and trip["files"] == 0

    report = next(results.glob("results-*.md")).read_text()
    assert "## fresh" in report and "STALE" in report

    # The README's generated section is rewritten from this run, the rest kept.
    from benchmarks import readme

    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n\n{readme.START}\nold figures\n{readme.END}\n\nafter\n")
    readme.update(data_file, readme=doc)
    text = doc.read_text()
    assert "old figures" not in text and text.endswith(f"{readme.END}\n\nafter\n")
    assert f"(results/{data_file.stem}.md)" in text and "| roundtrip |" in text
