"""``python -m benchmarks.prune_modes``: what each ``pipfresh cache prune --mode`` costs in CI.

Three CI jobs in a row per mode, each on a "fresh runner" (new venv, the cache
restored from the previous job's archive, tar + zstd as actions/cache makes it):

1. ``cold``: empty cache, the workload.
2. ``changed``: a dependency dropped (pandas, and numpy with it) and a new
   release published (fresh-probe 1.1), as between two CI runs of a project.
3. ``next``: the same requirements again: the steady state of a CI cache.

After each job the cache is pruned with the mode and archived. The figures: the
archive each job saves, and each job's wall time and bytes downloaded. Writes
``results/prune-modes.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import corpus
from .harness import (
    Pipfresh,
    RunContext,
    Served,
    Venvs,
    disk_usage,
    measure,
    run_checked,
    serve,
)
from .harness import archive as make_archive
from .harness import restore as restore_archive
from .pythons import find_python

HERE = Path(__file__).resolve().parent
DROPPED = ("pandas",)
"""Dropped from the workload between job 1 and job 2 (numpy goes too: pandas needed it)."""

MODES: dict[str, list[str]] = {
    "valid": ["--mode", "valid"],
    "ci": ["--mode", "ci"],
    "recent (keep-runs 1)": ["--mode", "recent", "--keep-runs", "1"],
    "recent (keep-runs 5)": ["--mode", "recent", "--keep-runs", "5"],
    "size (50M)": ["--mode", "size", "--max-size", "50M"],
}
JOBS = ("cold", "changed", "next")


@dataclass
class Row:
    mode: str
    job: str
    wall: float
    downloaded_bytes: int
    files: int
    exit_code: int
    cache_bytes: int  # on disk after the job and the prune
    archive_bytes: int
    prune_seconds: float


def without(requirements: Path, names: Sequence[str], target: Path) -> Path:
    """``requirements`` minus the lines that pin one of ``names``."""
    keep = [
        line
        for line in requirements.read_text().splitlines()
        if line.split("==")[0].strip().lower() not in names
    ]
    target.write_text("\n".join(keep) + "\n")
    return target


def ci_sequence(
    mode: str,
    prune_args: Sequence[str],
    served: Served,
    venvs: Venvs,
    python: Path,
    python_version: str,
    work: Path,
    requirements: Path,
) -> list[Row]:
    """The three jobs for one mode; the index is left as it was found."""
    contender = Pipfresh(f"pipfresh prune {mode}", prune_args)
    slug = "".join(ch if ch.isalnum() else "-" for ch in mode)
    cache = work / "caches" / slug
    saved = work / f"{slug}.tar.zst"
    shutil.rmtree(cache, ignore_errors=True)
    changed = without(requirements, DROPPED, work / "requirements-changed.txt")
    rows = []
    served.unpublish_new_probe()
    try:
        for job in JOBS:
            if job == "changed":
                served.publish_new_probe()
            if saved.exists():
                restore_archive(saved, cache)
            venv = venvs.fresh(python)
            reqs = requirements if job == "cold" else changed
            ctx = RunContext(venv, cache, served.url, reqs, work)
            m = measure(
                contender,
                ctx,
                served,
                scenario=f"prune-{job}",
                python=python_version,
                rep=1,
                log=work / "logs" / f"prune-{slug}-{job}.log",
            )
            started = time.perf_counter()
            prune = contender.ci_prune(ctx)
            assert prune is not None
            run_checked(prune, env=contender.env(ctx))
            pruned = time.perf_counter() - started
            rows.append(
                Row(
                    mode=mode,
                    job=job,
                    wall=m.wall,
                    downloaded_bytes=m.file_bytes + m.metadata_bytes,
                    files=m.files,
                    exit_code=m.exit_code,
                    cache_bytes=disk_usage(cache),
                    archive_bytes=make_archive(cache, saved),
                    prune_seconds=pruned,
                )
            )
            shutil.rmtree(cache)
            shutil.rmtree(venv, ignore_errors=True)
    finally:
        served.unpublish_new_probe()
        saved.unlink(missing_ok=True)
    return rows


def markdown(rows: Sequence[Row], meta: dict[str, str]) -> str:
    out = [
        "# pipfresh cache prune modes in CI",
        "",
        __doc__.split("\n\n", 1)[1].split("Writes")[0].strip() if __doc__ else "",
        "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        "| mode | job | archive saved | next job's wall time | downloaded | files fetched |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_mode: dict[str, list[Row]] = {}
    for row in rows:
        by_mode.setdefault(row.mode, []).append(row)
    for mode, mode_rows in by_mode.items():
        for i, row in enumerate(mode_rows):
            after = mode_rows[i + 1] if i + 1 < len(mode_rows) else None
            out.append(
                f"| {mode} | {row.job} | {row.archive_bytes / 1e6:.1f} MB | "
                + (
                    f"{after.wall:.1f} s | {after.downloaded_bytes / 1e6:.1f} MB | {after.files} |"
                    if after
                    else "| | |"
                )
            )
    out += [
        "",
        "Each row: the archive the job saved, and the job that restores it.",
        "",
        "| mode | job | wall | downloaded | exit |",
        "|---|---|---:|---:|---:|",
    ]
    out += [
        f"| {r.mode} | {r.job} | {r.wall:.1f} s | {r.downloaded_bytes / 1e6:.1f} MB | {r.exit_code} |"
        for r in rows
    ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prune_modes", description=__doc__)
    p.add_argument("--python", default="3.12")
    p.add_argument("--corpus", type=Path, default=corpus.DEFAULT_DIR / "dists")
    p.add_argument("--requirements", type=Path, default=corpus.WORKLOAD)
    p.add_argument("--work", type=Path, default=HERE / "work" / "prune-modes")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of the modes")
    p.add_argument("--out", type=Path, default=HERE / "results" / "prune-modes")
    args = p.parse_args(argv)
    python = find_python(args.python)
    pip_wheel = next((corpus.DEFAULT_DIR / "tools").glob("pip-*.whl"), None)
    if python is None or pip_wheel is None or not args.corpus.is_dir():
        print("needs the corpus (python -m benchmarks.corpus) and the Python", file=sys.stderr)
        return 2
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[Row] = []
    with serve(args.corpus, work, latency=args.latency_ms / 1000) as served:
        venvs = Venvs(work, pip_wheel)
        for mode in args.modes.split(","):
            for row in ci_sequence(
                mode,
                MODES[mode],
                served,
                venvs,
                python,
                args.python,
                work,
                args.requirements.resolve(),
            ):
                rows.append(row)
                print(
                    f"{row.mode:22s} {row.job:8s} {row.wall:6.1f}s "
                    f"downloaded {row.downloaded_bytes / 1e6:6.1f} MB  "
                    f"archive {row.archive_bytes / 1e6:6.1f} MB  exit {row.exit_code}",
                    flush=True,
                )
    meta = {
        "python": args.python,
        "workload": args.requirements.name,
        "latency": f"{args.latency_ms:g} ms per response",
        "dropped in job 2": ", ".join(DROPPED),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1) + "\n"
    )
    args.out.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
