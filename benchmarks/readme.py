"""Keep README's "Latest results" in step with the newest results file.

``python -m benchmarks`` calls :func:`update` after writing its results into
the repository's ``benchmarks/results/``, so the README shows the table and
chart of the run that was committed with it, not figures copied by hand.
``python -m benchmarks.readme`` does it again from the newest results file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report import ratio_table

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "results"
START = "<!-- benchmarks:latest:start (python -m benchmarks.readme rewrites this) -->"
END = "<!-- benchmarks:latest:end -->"


class NoMarkers(Exception):
    """The README has no generated section to rewrite."""


def newest(results: Path = RESULTS) -> Path | None:
    """The newest complete ``results-<stamp>.json`` (stamps sort by time)."""
    found = sorted(p for p in results.glob("results-*.json") if not p.stem.endswith("-partial"))
    return found[-1] if found else None


def section(data: dict[str, Any], json_path: Path, readme: Path = README) -> str:
    """The generated part: what ran, where, how long, the ratios and the chart."""
    meta, rows = data["meta"], data["runs"]
    base = readme.parent
    md = json_path.with_suffix(".md")
    png = json_path.with_suffix(".png")
    scenarios = [s for s in meta["scenarios"] if any(r["scenario"] == s for r in rows)]
    lines = [
        f"{meta['date']}, {meta['machine']}; load average {meta['load_start']} at the start, "
        f"{meta['load_end']} at the end ({meta['load_note']}). N={meta['reps']} (median; "
        f"multi-abi N={meta.get('multi_reps', 1)} by design), {meta['elapsed_min']:.1f} min "
        f"in all, with `{meta['command']}`; {meta['versions']}. Full tables (min–max, CPU "
        f"time, requests by kind, cache sizes, installed probe): "
        f"[`{md.relative_to(base)}`]({md.relative_to(base)}).",
        "",
        "Median wall time, pipfresh over the others (< 1: pipfresh is faster):",
        "",
        *ratio_table(rows, scenarios),
    ]
    if png.exists():
        lines += ["", f"![benchmark chart]({png.relative_to(base)})"]
    return "\n".join(lines)


def update(json_path: Path | None = None, readme: Path = README) -> Path:
    """Rewrite the README's generated section from ``json_path`` (default: the newest)."""
    json_path = json_path or newest()
    if json_path is None:
        raise FileNotFoundError(f"no results-*.json under {RESULTS}")
    text = readme.read_text()
    if START not in text or END not in text:
        raise NoMarkers(f"{readme} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = section(json.loads(json_path.read_text()), json_path.resolve(), readme)
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")
    return json_path


if __name__ == "__main__":
    print(f"README.md: latest results from {update()}")
