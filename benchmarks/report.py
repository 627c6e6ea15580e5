"""Turn measurements into the markdown tables and the PNG chart under ``benchmarks/results/``.

Medians of N with min and max; ratios are medians over medians. Request and
byte counts are exact (the index counts them), so they are the figures to
trust first on a busy machine; times are the ones to read with the load.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .release_day import LOCKED, LOCKED_SCENARIOS

MB = 1e6


def _group(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["scenario"] == "fill":
            continue
        groups.setdefault((row["scenario"], row["python"], row["contender"]), []).append(row)
    return groups


def _med(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def _extra(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [float(r["extra"][key]) for r in rows if key in r["extra"]]
    return statistics.median(values) if values else None


def _spread(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    values = [float(r[key]) for r in rows]
    if len(values) == 1:
        return f"{values[0]:.1f} (n=1)"
    spread = f"{min(values):.1f}–{max(values):.1f}, n={len(values)}"
    return f"{statistics.median(values):.1f} ({spread})"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def _probe(rows: Sequence[Mapping[str, Any]]) -> str:
    got = sorted({str(r["probe"]) for r in rows})
    expected = sorted({str(r["probe_expected"]) for r in rows})
    stale = sum(1 for r in rows if r["stale"])
    text = "/".join(got)
    if stale:
        return f"**{text} STALE** ({stale}/{len(rows)}; newest {'/'.join(expected)})"
    return f"{text} ✓"


def scenario_table(
    rows: Sequence[Mapping[str, Any]], scenario: str, contenders: Sequence[str]
) -> list[str]:
    groups = _group(rows)
    pythons = sorted({k[1] for k in groups if k[0] == scenario})
    roundtrip = scenario == "roundtrip"
    head = [
        "python",
        "contender",
        "wall s, median (min–max, n)",
        "× pip",
        "CPU s",
        "requests: index 200 / 304 / files / metadata",
        "MB served",
        "cache MB",
        "probe",
    ]
    aged = scenario in ("fresh", "warm-young")
    if roundtrip:
        head[7:7] = ["archive MB", "archive+restore s"]
    if aged:
        head.append("cache age s")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for python in pythons:
        pip_rows = groups.get((scenario, python, "pip"))
        pip_wall = _med(pip_rows, "wall") if pip_rows else None
        for name in contenders:
            g = groups.get((scenario, python, name))
            if not g:
                continue
            if any(r["exit_code"] != 0 for r in g):
                failed = sum(1 for r in g if r["exit_code"] != 0)
                name = f"{name} (**{failed} failed**)"
            reqs = " / ".join(
                f"{_med(g, k):.0f}" for k in ("index_200", "index_304", "files", "metadata")
            )
            cells = [
                python,
                name,
                _spread(g, "wall"),
                _ratio(_med(g, "wall"), pip_wall),
                f"{_med(g, 'cpu'):.1f}",
                reqs,
                f"{_med(g, 'bytes') / MB:.1f}",
                f"{_med(g, 'cache_bytes') / MB:.1f}",
                _probe(g),
            ]
            if roundtrip:
                size = _extra(g, "archive_bytes")
                moves = [_extra(g, "archive_seconds"), _extra(g, "restore_seconds")]
                cells[7:7] = [
                    f"{size / MB:.1f}" if size is not None else "–",
                    f"{sum(m for m in moves if m is not None):.1f}",
                ]
            if aged:
                age = _extra(g, "cache_age")
                cells.append(f"{age:.0f}" if age is not None else "–")
            out.append("| " + " | ".join(cells) + " |")
    return out


OTHERS = [
    "pip",
    "no-cache",
    "uv",
    "uv --refresh",
    "uv --compile-bytecode",
    "uv --refresh --compile-bytecode",
]
"""The contenders pipfresh is compared with, in the ratio table's order."""

SAME_WHEN_EMPTY = {"uv --refresh": "uv", "uv --refresh --compile-bytecode": "uv --compile-bytecode"}
"""In cold (empty cache) these variants are the uv contender on the right."""


def ratio_table(rows: Sequence[Mapping[str, Any]], scenarios: Sequence[str]) -> list[str]:
    """pipfresh's median wall time (and bytes served) over each other contender's, per scenario."""
    groups = _group(rows)
    head = ["scenario", *(f"pipfresh / {o}" for o in OTHERS), "MB served: pipfresh / pip"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cold = [g for k, g in groups.items() if k[0] == "cold" and k[2] == "no-cache"]
    cold_nocache = _med(cold[0], "wall") if len(cold) == 1 else None
    for scenario in scenarios:
        keys = sorted({(k[0], k[1]) for k in groups if k[0] == scenario})
        wall: dict[str, float] = {}
        served: dict[str, float] = {}
        for key in keys:
            for name in ["pipfresh", *OTHERS]:
                g = groups.get((*key, name))
                if not g and scenario == "cold":
                    g = groups.get((*key, SAME_WHEN_EMPTY.get(name, "")))
                if g:
                    wall[name] = wall.get(name, 0.0) + _med(g, "wall")
                    served[name] = served.get(name, 0.0) + _med(g, "bytes")
        if "pipfresh" not in wall:
            continue
        cells = [scenario + (" (sum over pythons)" if len(keys) > 1 else "")]
        for other in OTHERS:
            if other in wall:
                same = scenario == "cold" and not any((*k, other) in groups for k in keys)
                cells.append(_ratio(wall["pipfresh"], wall[other]) + (" ‡" if same else ""))
            elif other == "no-cache" and cold_nocache is not None and len(keys) == 1:
                cells.append(_ratio(wall["pipfresh"], cold_nocache) + " †")
            else:
                cells.append("–")
        pip_served = served.get("pip")
        mine = f"{served['pipfresh'] / MB:.1f}"
        cells.append(mine + (f" / {pip_served / MB:.1f}" if pip_served is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "† no-cache keeps no cache, so its run in this scenario is its cold run (measured in cold).",
    ]
    if any("‡" in line for line in out):
        out.append("‡ with an empty cache `--refresh` changes nothing: uv's row without it.")
    return out


def release_day_table(rows: Sequence[Mapping[str, Any]], contenders: Sequence[str]) -> list[str]:
    """Release day side by side: each contender against pipfresh's ``locked`` and uv --refresh."""
    groups = _group(rows)
    head = [
        "scenario",
        "python",
        "contender",
        "wall s, median (min–max, n)",
        "× pipfresh locked",
        "× uv --refresh",
        "index 200 / 304",
        "index requests per page",
        "files",
        "MB served",
        "probe",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in LOCKED_SCENARIOS:
        for python in sorted({k[1] for k in groups if k[0] == scenario}):
            own = groups.get((LOCKED, python, "pipfresh"))
            uv = groups.get((scenario, python, "uv --refresh"))
            for name in contenders:
                g = groups.get((scenario, python, name))
                if not g:
                    continue
                failed = sum(1 for r in g if r["exit_code"] != 0)
                pages = _extra(g, "lock_pages")
                index = _med(g, "index_200") + _med(g, "index_304")
                cells = [
                    scenario,
                    python,
                    name + (f" (**{failed} failed**)" if failed else ""),
                    _spread(g, "wall"),
                    _ratio(_med(g, "wall"), _med(own, "wall") if own else None),
                    _ratio(_med(g, "wall"), _med(uv, "wall") if uv else None),
                    f"{_med(g, 'index_200'):.0f} / {_med(g, 'index_304'):.0f}",
                    f"{index / pages:.2f} ({pages:.0f} pages)" if pages else "–",
                    f"{_med(g, 'files'):.0f}",
                    f"{_med(g, 'bytes') / MB:.1f}",
                    _probe(g),
                ]
                out.append("| " + " | ".join(cells) + " |")
    return out


def markdown(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    contenders = list(meta["contenders"])
    scenarios = [s for s in meta["scenarios"] if any(r["scenario"] == s for r in rows)]
    lines = [
        f"# Benchmark results {meta['date']}",
        "",
        *(
            []
            if meta.get("complete", True)
            else ["**Interrupted run: the figures of the runs it finished.**", ""]
        ),
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}; load average at start {meta['load_start']}, "
        f"at end {meta['load_end']} ({meta['load_note']})",
        f"- versions: {meta['versions']}",
        f"- workload: {meta['workload']}",
        f"- index: 127.0.0.1, latency {meta['latency_ms']} ms per response, bandwidth "
        f"{meta['bandwidth']}, pages `max-age={meta['max_age']}`; N={meta['reps']} "
        f"(median, min–max), contenders interleaved; total {meta['elapsed_min']:.1f} min",
        *(
            [
                "- time by phase (min): "
                + ", ".join(f"{k} {v:.1f}" for k, v in meta["phases_min"].items())
            ]
            if meta.get("phases_min")
            else []
        ),
        "",
        "## pipfresh against the others (median wall time ratios; < 1 means pipfresh is faster)",
        "",
        *ratio_table(rows, scenarios),
    ]
    if any(s in LOCKED_SCENARIOS for s in scenarios):
        lines += [
            "",
            "## Release day, side by side (median wall time ratios; requests exact)",
            "",
            *release_day_table(rows, list(meta["contenders"])),
        ]
    for scenario in scenarios:
        names = [*contenders, *(n for n in meta.get("extra_contenders", []) if n not in contenders)]
        lines += ["", f"## {scenario}", "", meta["descriptions"].get(scenario, ""), ""]
        lines += scenario_table(rows, scenario, names)
        if scenario == "multi-abi":
            lines += ["", *multi_abi_sizes(rows)]
    return "\n".join(lines) + "\n"


def multi_abi_sizes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    groups = _group(rows)
    pythons = sorted({k[1] for k in groups if k[0] == "multi-abi"})
    if not pythons:
        return []
    last: dict[str, str] = {}  # per contender, the interpreter that ran last
    for row in rows:
        if row["scenario"] == "multi-abi":
            last[str(row["contender"])] = str(row["python"])
    out = [
        f"Cache size on disk after all {len(pythons)} interpreters (hardlinks counted once):",
        "",
    ]
    for (scenario, python, name), g in sorted(groups.items()):
        if scenario == "multi-abi" and python == last.get(name):
            total = sum(
                _med(groups[("multi-abi", p, name)], "wall")
                for p in pythons
                if ("multi-abi", p, name) in groups
            )
            out.append(
                f"- {name}: {_med(g, 'cache_bytes') / MB:.1f} MB, "
                f"{total:.1f} s for the {len(pythons)} runs"
            )
    return out


def chart(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], target: Path) -> Path:
    """Grouped bars: median wall time (min-max whiskers) and MB served, per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _group(rows)
    scenarios = [s for s in meta["scenarios"] if any(k[0] == s for k in groups)]
    names = [*meta["contenders"], *meta.get("extra_contenders", [])]
    names = [n for n in names if any(k[2] == n for k in groups)]
    fig, axes = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, walls, lo, hi, served, stale_x, stale_y = [], [], [], [], [], [], []
        for j, scenario in enumerate(scenarios):
            g = [r for k, rs in groups.items() if k[0] == scenario and k[2] == name for r in rs]
            if not g:
                continue
            per_python: dict[str, list[Mapping[str, Any]]] = {}
            for r in g:
                per_python.setdefault(str(r["python"]), []).append(r)
            w = sum(_med(rs, "wall") for rs in per_python.values())
            mins = sum(min(float(r["wall"]) for r in rs) for rs in per_python.values())
            maxs = sum(max(float(r["wall"]) for r in rs) for rs in per_python.values())
            x = j + (i - (len(names) - 1) / 2) * width
            xs.append(x)
            walls.append(w)
            lo.append(w - mins)
            hi.append(maxs - w)
            served.append(sum(_med(rs, "bytes") for rs in per_python.values()) / MB)
            if any(r["stale"] for r in g):
                stale_x.append(x)
                stale_y.append(w)
        axes[0].bar(xs, walls, width, yerr=[lo, hi], capsize=2, label=name)
        axes[1].bar(xs, served, width, label=name)
        if stale_x:
            axes[0].scatter(stale_x, [y * 1.04 + 0.5 for y in stale_y], marker="x", color="red")
    axes[0].set_ylabel("wall time, s (median; multi-abi: sum of 4)")
    axes[1].set_ylabel("MB served by the index")
    axes[1].set_xticks(range(len(scenarios)), scenarios)
    axes[0].legend(ncol=4, fontsize=8)
    axes[0].set_title(
        f"pipfresh benchmarks {meta['date']} · {meta['machine']} · load {meta['load_start']}"
        f" → {meta['load_end']}\n{meta['versions']} · red x: installed a stale version",
        fontsize=9,
    )
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
