"""``python -m benchmarks``: run the scenarios, write results/<stamp>.{json,md,png} and latest.*."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import corpus, readme
from .harness import (
    OPTIONAL_CONTENDERS,
    Measurement,
    Venvs,
    default_contenders,
    serve,
    uv_binary,
)
from .pythons import find_python
from .release_day import DESCRIPTIONS as RELEASE_DAY
from .report import chart, markdown
from .scenarios import KNOWN, SCENARIOS, Plan, Runner, tool_version

HERE = Path(__file__).resolve().parent

DESCRIPTIONS = {
    "cold": "Empty cache, fresh venv.",
    "warm-young": (
        "The cold run's cache again, minutes later: inside the pages' max-age. "
        "no-cache is measured in cold and fresh only: without a cache, every run is its cold run."
    ),
    "fresh": (
        "The cold run's cache, and fresh-probe 1.1 published just before the measured run "
        "(inside max-age: see the cache's age). The newest version is 1.1: anything else "
        "is marked STALE."
    ),
    "warm": (
        "A cache filled while the index announced max-age=1, i.e. older than max-age, as a "
        "cache restored by CI hours later is; used as the filling run left it. "
        "`pipfresh (pages pruned)` is the same cache after `pipfresh cache prune` "
        "(pip's index pages dropped; pipfresh's recorded resolution still revalidates them: 304s); `pipfresh (pip installer)`, when "
        "asked for, is pipfresh with `PIPFRESH_INSTALLER=pip`."
    ),
    **RELEASE_DAY,
    "roundtrip": (
        "The warm cache, pruned as a CI job would (pip: nothing; uv: `uv cache prune --ci`; "
        "pipfresh: `pipfresh cache prune`), archived with tar + zstd (level 3 and --long=30, as "
        "actions/cache), deleted, restored, then the run (uv's variants behave as uv here)."
    ),
    "multi-abi": (
        "One cache root per contender, shared by CPython 3.10, 3.11, 3.12 and 3.13 in turn; "
        "time per run and size on disk. N=1 by design (`--multi-reps`): four installs per "
        "contender. The first interpreter's row is the first repetition's cold run, whose "
        "cache is the starting point for the others."
    ),
}


def _bandwidth(text: str | None) -> float | None:
    """``"50MB"`` -> bytes/s; ``None`` for unlimited."""
    if text is None:
        return None
    units = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "b": 1.0}
    lowered = text.strip().lower().removesuffix("/s")
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            return float(lowered[: -len(suffix)]) * factor
    return float(lowered)


def _machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu})"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("-n", "--reps", type=int, default=3, help="repetitions (median of N)")
    p.add_argument("--corpus", type=Path, default=corpus.DEFAULT_DIR / "dists")
    p.add_argument("--requirements", type=Path, default=corpus.WORKLOAD)
    p.add_argument("--pip-wheel", type=Path, help="pip wheel for the venvs (default: corpus/tools)")
    p.add_argument("--python", default="3.12", help="X.Y for all but multi-abi")
    p.add_argument("--multi-python", default="3.10,3.11,3.12,3.13", help="X.Y,... for multi-abi")
    p.add_argument("--multi-reps", type=int, default=1, help="repetitions of multi-abi")
    p.add_argument("--latency-ms", type=float, default=20.0, help="per response")
    p.add_argument("--bandwidth", help="per response, e.g. 50MB (bytes/s); default unlimited")
    p.add_argument("--max-age", type=int, default=600, help="index pages' max-age (PyPI: 600)")
    p.add_argument("--contenders", default=",".join(default_contenders()), help="comma-separated")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {','.join(KNOWN)} (default: all but the locked ones)",
    )
    p.add_argument(
        "--released", default="boto3", help="the pinned project locked-pinned-release releases"
    )
    p.add_argument(
        "--upgraded",
        default="boto3,rich,gunicorn",
        help="the pinned projects locked-upgrade upgrades (comma-separated)",
    )
    p.add_argument(
        "--work", type=Path, default=HERE / "work" / "main", help="scratch, emptied first"
    )
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--note", default="", help="how busy the machine was, for the results")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the .md/.png of a results file"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render is not None:
        data = json.loads(args.render.read_text())
        _write(args.render.parent, data["meta"], data["runs"], chart_too=not args.no_chart)
        return 0
    started = time.monotonic()
    load_start = _load()
    available = {**default_contenders(), **OPTIONAL_CONTENDERS}
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    if set(names) - set(available):
        raise SystemExit(f"unknown contenders: {sorted(set(names) - set(available))}")
    contenders = [available[n] for n in names]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(KNOWN)
    if unknown:
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}")
    python = find_python(args.python)
    if python is None:
        raise SystemExit(f"Python {args.python} not found")
    # The main interpreter first: the first cold run is its multi-abi run.
    versions = [v.strip() for v in args.multi_python.split(",") if v.strip()]
    versions.sort(key=lambda v: v != args.python)
    multi = {v: find_python(v) for v in versions}
    multi_found = {v: p for v, p in multi.items() if p is not None}
    pip_wheel = args.pip_wheel or next((corpus.DEFAULT_DIR / "tools").glob("pip-*.whl"), None)
    if pip_wheel is None or not args.corpus.is_dir():
        raise SystemExit("no corpus: run `python -m benchmarks.corpus` first")

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    plan = Plan(
        contenders,
        scenarios,
        args.reps,
        python,
        args.python,
        multi_found,
        multi_reps=min(args.multi_reps, args.reps),
        released=args.released,
        upgraded=tuple(n.strip() for n in args.upgraded.split(",") if n.strip()),
    )
    with serve(
        args.corpus,
        work,
        latency=args.latency_ms / 1000,
        bandwidth=_bandwidth(args.bandwidth),
        max_age=args.max_age,
    ) as served:
        print(f"serving {args.corpus} at {served.url}", flush=True)
        runner = Runner(
            plan,
            served,
            Venvs(work, pip_wheel),
            work,
            args.requirements.resolve(),
            progress=lambda s: print(s, flush=True),
        )
        projects = len(served.index.files())
        partial = args.results / f"results-{_stamp()}-partial.json"
        args.results.mkdir(parents=True, exist_ok=True)

        def checkpoint(_: Measurement) -> None:
            """Everything so far, so an interrupted run still leaves its figures."""
            rows = [m.to_json() for m in runner.results]
            meta = _meta(args, argv, plan, rows, load_start, started, pip_wheel, projects)
            meta["complete"] = False
            partial.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")

        runner.on_result = checkpoint
        rows = [m.to_json() for m in runner.run(started)]
    meta = _meta(args, argv, plan, rows, load_start, started, pip_wheel, projects)
    meta["phases_min"] = {k: round(v / 60, 2) for k, v in sorted(runner.phases.items())}
    _write(args.results, meta, rows, chart_too=not args.no_chart)
    partial.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["exit_code"] != 0 for r in rows) else 0


def _meta(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    plan: Plan,
    rows: list[dict[str, Any]],
    load_start: str,
    started: float,
    pip_wheel: Path,
    projects: int,
) -> dict[str, Any]:
    from pipfresh import __version__ as pipfresh_version

    pythons = sorted({str(r["python"]) for r in rows})
    now = datetime.datetime.now(datetime.timezone.utc)
    uv = tool_version([uv_binary(), "--version"])
    stamp = _stamp(now)
    return {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "stamp": stamp,
        "complete": True,
        "command": "python -m benchmarks "
        + shlex.join(list(sys.argv[1:] if argv is None else argv)),
        "machine": _machine(),
        "load_start": load_start,
        "load_end": _load(),
        "load_note": args.note or "load average: 1-, 5-, 15-minute",
        "versions": f"{pip_wheel.name.split('-py')[0].replace('-', ' ')}, {uv}, "
        f"pipfresh {pipfresh_version}, CPython {', '.join(pythons)}",
        "workload": f"{args.requirements.name} ({projects} projects served)",
        "latency_ms": args.latency_ms,
        "bandwidth": args.bandwidth or "unlimited",
        "max_age": args.max_age,
        "reps": plan.reps,
        "multi_reps": plan.multi_reps,
        "contenders": [c.name for c in plan.contenders],
        "scenarios": list(plan.scenarios),
        "descriptions": DESCRIPTIONS,
        "elapsed_min": (time.monotonic() - started) / 60,
    }


def _stamp(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%d-%H%M")


def _write(
    results: Path, meta: dict[str, Any], rows: list[dict[str, Any]], chart_too: bool
) -> None:
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"results-{meta['stamp']}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    text = markdown(meta, rows)
    if chart_too:
        png = chart(meta, rows, stem.with_suffix(".png"))
        text = text.replace("\n", f"\n![chart]({png.name})\n", 1)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {stem}.json/.md" + ("/.png" if chart_too else ""))
    if results.resolve() == readme.RESULTS:
        try:
            readme.update(stem.with_suffix(".json"))
            print(f"README.md: latest results from {stem.name}")
        except readme.NoMarkers as exc:
            print(f"README.md not updated: {exc}")


if __name__ == "__main__":
    raise SystemExit(main())
