"""The issue's scenarios, run repetition by repetition with contenders interleaved.

Within each repetition every scenario runs every contender once, in an order
rotated per repetition, so a slow minute on a shared machine hits all
contenders alike. Caches are prepared off the clock:

- ``cold``: empty cache; right after it, from copies of the cache it left:
- ``fresh``: probe 1.1 published just before the run (the cache is one run old);
- ``warm-young``: the same cache again, two runs old (inside max-age).
- ``warm``: a copy of a cache filled once while the index said ``max-age=1``
  (so it is older than max-age, as a cache restored hours later is); as the run left it.
- ``roundtrip``: that old cache, pruned as a CI job would, archived (tar+zstd),
  deleted, restored, then the run.
- ``multi-abi``: one cache root for 3.10, 3.11, 3.12 and 3.13 runs in turn.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .harness import (
    Contender,
    Measurement,
    RunContext,
    Served,
    Snapshot,
    Venvs,
    disk_usage,
    measure,
    run_checked,
)
from .harness import archive as make_archive
from .harness import restore as restore_archive
from .release_day import LOCKED_SCENARIOS, ReleaseDay

SCENARIOS = ("cold", "fresh", "warm-young", "warm", "roundtrip", "multi-abi")
"""Run by default."""
KNOWN = (*SCENARIOS, *LOCKED_SCENARIOS)
"""What ``--scenarios`` accepts: release day (:mod:`release_day`) only when asked for."""

AGED_MAX_AGE = 1
"""max-age the index announces while filling the ``warm`` cache."""

SCOPE: dict[str, tuple[str, ...]] = {
    "pip": KNOWN,
    "uv": KNOWN,
    "pipfresh": KNOWN,
    # Without a cache every run is a cold run (and always fresh): its cold row says it all.
    "no-cache": ("cold",),
    # With an empty cache --refresh changes nothing: cold's row would be uv's again.
    "uv --refresh": ("fresh", "warm-young", "warm", *LOCKED_SCENARIOS),
    # pip's end state (bytecode). Elsewhere --refresh --compile-bytecode stands in: in fresh
    # this one is as stale as uv, in warm (pages past max-age) it revalidates as --refresh does.
    "uv --compile-bytecode": ("cold",),
    # pipfresh's end state: fresh pages and bytecode (in cold: uv --compile-bytecode; in
    # warm-young it would repeat its fresh row, less the one new version, to fit 25 minutes).
    "uv --refresh --compile-bytecode": ("fresh", "warm"),
    "pipfresh (pip installer)": ("warm",),
    "pipfresh (pages pruned)": ("warm",),
}
"""Where each contender runs; rows that would tell nothing new are left out."""

DEFAULT_SCOPE = ("cold", "fresh", "warm-young", "warm")
"""Where a contender :data:`SCOPE` does not name runs."""


@dataclass
class Plan:
    """What to run: contenders, scenarios, repetitions, interpreters."""

    contenders: Sequence[Contender]
    scenarios: Sequence[str]
    reps: int
    python: Path
    python_version: str
    multi_pythons: dict[str, Path]
    scope: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(SCOPE))
    multi_reps: int = 1
    """multi-abi is four installs per contender: by default it runs in the first repetition only."""
    released: str = "boto3"
    """The pinned project of which ``locked-pinned-release`` publishes a new version."""
    upgraded: tuple[str, ...] = ("boto3", "rich", "gunicorn")
    """The pinned projects ``locked-upgrade`` publishes and installs a new version of."""

    def runs(self, scenario: str, contenders: Sequence[Contender] | None = None) -> list[Contender]:
        """The contenders that run in ``scenario`` (those with a cache, but in cold and fresh)."""
        chosen = [
            c
            for c in (self.contenders if contenders is None else contenders)
            if scenario in self.scope.get(c.name, DEFAULT_SCOPE)
        ]
        if scenario in ("cold", "fresh"):
            return chosen
        return [c for c in chosen if c.uses_cache]


class Runner:
    """Runs a :class:`Plan` against a served corpus; ``results`` grows as it goes."""

    def __init__(
        self,
        plan: Plan,
        served: Served,
        venvs: Venvs,
        work: Path,
        requirements: Path,
        progress: Callable[[str], None] = print,
        on_result: Callable[[Measurement], None] | None = None,
    ) -> None:
        self.plan = plan
        self.served = served
        self.venvs = venvs
        self.work = work
        self.requirements = requirements
        self.progress = progress
        self.on_result = on_result
        self.results: list[Measurement] = []
        self.phases: dict[str, float] = {}
        """Seconds spent per kind of work, measured runs and preparation alike."""
        self._old: dict[str, Snapshot] = {}
        self._multi: dict[str, Path] = {}
        self._runs = 0

    # -- plumbing ----------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - started)

    def _add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def _ctx(self, venv: Path, cache: Path, requirements: Path | None = None) -> RunContext:
        reqs = requirements or self.requirements
        return RunContext(venv, cache, self.served.url, reqs, self.work)

    def _cache_dir(self, label: str) -> Path:
        path = self.work / "caches" / label
        with self._phase("remove caches"):
            shutil.rmtree(path, ignore_errors=True)
        return path

    def _copy(self, snapshot: Snapshot) -> Path:
        with self._phase("copy caches"):
            return snapshot.copy(self.work / "caches" / "run")

    def _snapshot(self, cache: Path, contender: Contender) -> Snapshot:
        with self._phase("check snapshots"):
            return Snapshot(cache, contender.linked)

    def _check(self, snapshot: Snapshot, contender: Contender) -> None:
        with self._phase("check snapshots"):
            snapshot.check(contender.name)

    def _run(
        self,
        contender: Contender,
        scenario: str,
        rep: int,
        cache: Path,
        python: Path | None = None,
        python_version: str | None = None,
        extra: dict[str, float] | None = None,
        requirements: Path | None = None,
    ) -> Measurement:
        with self._phase("make venvs"):
            venv = self.venvs.fresh(python or self.plan.python)
        self._runs += 1
        slug = contender.name.replace(" ", "").replace("(", "-").replace(")", "")
        log = self.work / "logs" / f"{self._runs:03d}-{scenario}-{slug}.log"
        started = time.perf_counter()
        m = measure(
            contender,
            self._ctx(venv, cache, requirements),
            self.served,
            scenario=scenario,
            python=python_version or self.plan.python_version,
            rep=rep,
            log=log,
            extra=extra,
        )
        self._add("filling runs" if scenario == "fill" else "measured runs", m.wall)
        self._add("read probe, cache size", time.perf_counter() - started - m.wall)
        self._record(m, contender, log)
        with self._phase("check snapshots"):
            self.venvs.check(python or self.plan.python, contender.name)
        with self._phase("remove venvs"):
            shutil.rmtree(venv, ignore_errors=True)
        return m

    def _record(self, m: Measurement, contender: Contender, log: Path | None = None) -> None:
        self.results.append(m)
        if self.on_result is not None:
            self.on_result(m)
        flag = "" if m.exit_code == 0 else f" EXIT {m.exit_code} (see {log})"
        flag += " STALE" if m.stale else ""
        self.progress(
            f"[{m.scenario} #{m.rep} py{m.python}] {contender.name:24s} {m.wall:6.1f}s "
            f"cpu {m.cpu:5.1f}s  req {m.requests:4d} (200 {m.index_200}, 304 {m.index_304}, "
            f"files {m.files}, meta {m.metadata})  {m.bytes / 1e6:7.1f} MB  "
            f"cache {m.cache_bytes / 1e6:6.1f} MB  probe {m.probe}{flag}"
        )

    def _order(self, items: Sequence[Contender], rep: int) -> list[Contender]:
        k = rep % len(items) if items else 0
        return [*items[k:], *items[:k]]

    def _prepare(self, argv: list[str] | None, contender: Contender, cache: Path) -> None:
        if argv is not None:
            with self._phase("prune"):
                run_checked(argv, env=contender.env(self._ctx(self.work, cache)))

    # -- preparation ---------------------------------------------------------------

    def fill_old(self) -> None:
        """One fill per cache family while pages say max-age=1; then wait them out."""
        self._old = self.fill_aged(("warm", "roundtrip"), "old")

    def fill_aged(
        self, scenarios: Sequence[str], label: str, requirements: Path | None = None
    ) -> dict[str, Snapshot]:
        """Per cache family of ``scenarios``, a cache filled while pages said max-age=1.

        Returns once those pages are past their max-age, as a cache CI restores hours later.
        """
        families: dict[str, Contender] = {}
        for scenario in scenarios:
            if scenario in self.plan.scenarios:
                for c in self.plan.runs(scenario):
                    families.setdefault(c.family, c)
        if not families:
            return {}
        filled: dict[str, Snapshot] = {}
        index = self.served.index
        saved_max_age = index.page_max_age
        index.page_max_age = AGED_MAX_AGE
        try:
            # The family's plain member fills (pipfresh, not a variant of it).
            for family, first in families.items():
                contender = next((c for c in self.plan.contenders if c.name == family), first)
                cache = self._cache_dir(f"{label}-{family}")
                m = self._run(contender, "fill", 0, cache, requirements=requirements)
                if m.exit_code != 0:
                    raise RuntimeError(f"filling the {family} cache failed")
                filled[family] = self._snapshot(cache, contender)
        finally:
            index.page_max_age = saved_max_age
        time.sleep(AGED_MAX_AGE + 1)
        return filled

    # -- scenarios -----------------------------------------------------------------

    def young(self, rep: int) -> None:
        """cold, then fresh and warm-young from copies of its cache, family by family.

        Back to back, so the young cache is as old as a few runs (well inside
        max-age even on a slow machine; the tables show its age). A family's
        variants (uv --refresh, ...) start from the cache its first cold run left,
        as they would from any cache uv filled. In the first repetition that cold
        cache then becomes multi-abi's starting point.
        """
        wanted = set(self.plan.scenarios)
        runs = {
            s: self.plan.runs(s) if s in wanted else [] for s in ("cold", "fresh", "warm-young")
        }
        involved = [c for c in self.plan.contenders if any(c in r for r in runs.values())]
        families: dict[str, list[Contender]] = {}
        for c in self._order(involved, rep):
            families.setdefault(c.family, []).append(c)
        multi = {c.name for c in self._multi_contenders()} if rep == 1 else set()
        for members in families.values():
            source: Path | None = None
            for c in members:
                if c in runs["cold"]:
                    cache = self._cache_dir(f"cold-{c.name}")
                    m = self._run(c, "cold", rep, cache)
                    if c.name in multi and m.exit_code == 0:
                        self._multi[c.name] = cache
                    if source is None:
                        source = cache
                    elif c.name not in self._multi:
                        self._remove(cache)
            later = [c for c in members if c in runs["fresh"] or c in runs["warm-young"]]
            if source is None and later:
                source = self._cache_dir(f"cold-{later[0].name}")
                self._run(later[0], "fill", 0, source)
            filled = time.time()
            young = (
                self._snapshot(source, later[0])
                if source is not None and later and later[0].uses_cache
                else None
            )
            for c in members:
                if c not in runs["fresh"]:
                    continue
                run = self._copy(young) if young is not None else self._cache_dir("run")
                self.served.publish_new_probe()
                try:
                    age = time.time() - filled
                    self._run(c, "fresh", rep, run, extra={"cache_age": age})
                finally:
                    self.served.unpublish_new_probe()
                if young is not None:
                    self._check(young, c)
            for c in members:
                if c in runs["warm-young"] and young is not None:
                    run = self._copy(young)
                    age = time.time() - filled
                    self._run(c, "warm-young", rep, run, extra={"cache_age": age})
                    self._check(young, c)
            if source is not None and source not in self._multi.values():
                self._remove(source)

    def _remove(self, path: Path) -> None:
        with self._phase("remove caches"):
            shutil.rmtree(path, ignore_errors=True)

    def warm(self, rep: int) -> None:
        for c in self._order(self.plan.runs("warm"), rep):
            cache = self._copy(self._old[c.family])
            self._prepare(c.prepare(self._ctx(self.work, cache)), c, cache)
            self._run(c, "warm", rep, cache)
            self._check(self._old[c.family], c)

    def roundtrip(self, rep: int) -> None:
        for c in self._order(self.plan.runs("roundtrip"), rep):
            cache = self._copy(self._old[c.family])
            started = time.perf_counter()
            self._prepare(c.ci_prune(self._ctx(self.work, cache)), c, cache)
            pruned = time.perf_counter()
            target = self.work / "cache.tar.zst"
            with self._phase("archive, restore"):
                size = make_archive(cache, target)
                archived = time.perf_counter()
                shutil.rmtree(cache)
                restore_archive(target, cache)
                restored = time.perf_counter()
                target.unlink()
            extra = {
                "archive_bytes": float(size),
                "restored_bytes": float(disk_usage(cache)),
                "prune_seconds": pruned - started,
                "archive_seconds": archived - pruned,
                "restore_seconds": restored - archived,
            }
            self._run(c, "roundtrip", rep, cache, extra=extra)
            self._check(self._old[c.family], c)

    def _multi_contenders(self) -> list[Contender]:
        if "multi-abi" not in self.plan.scenarios or self.plan.multi_reps < 1:
            return []
        return self.plan.runs("multi-abi")

    def multi_abi(self, rep: int) -> None:
        """The interpreters in turn on one cache root per contender (N=1 by default).

        When the first repetition's cold run used one of the interpreters, its
        cache is the starting point and its measurement is that interpreter's row
        (``extra.from_cold``): it was exactly that run.
        """
        if rep > self.plan.multi_reps:
            return
        chosen = self._order(self._multi_contenders(), rep)
        pythons = dict(self.plan.multi_pythons)
        first = self.plan.python_version
        reused = {
            c.name: cache for c in chosen if rep == 1 and (cache := self._multi.pop(c.name, None))
        }
        if reused and first in pythons:
            del pythons[first]
            for c in chosen:
                cold = next(
                    (
                        m
                        for m in self.results
                        if m.scenario == "cold" and m.rep == 1 and m.contender == c.name
                    ),
                    None,
                )
                if c.name in reused and cold is not None:
                    self._record(
                        replace(cold, scenario="multi-abi", extra={**cold.extra, "from_cold": 1.0}),
                        c,
                    )
        caches = {c.name: reused.get(c.name) or self._cache_dir(f"multi-{c.name}") for c in chosen}
        for version, python in pythons.items():
            for c in chosen:
                self._run(c, "multi-abi", rep, caches[c.name], python, version)
        with self._phase("remove caches"):
            for cache in caches.values():
                shutil.rmtree(cache, ignore_errors=True)

    # -- everything ----------------------------------------------------------------

    def run(self, started: float | None = None) -> list[Measurement]:
        """Every repetition; after each, the elapsed time and a projected total.

        ``started`` is when the whole benchmark started (``time.monotonic()``), so
        the projection counts the corpus being served too.
        """
        began = time.monotonic() if started is None else started
        self.fill_old()
        steps: list[tuple[set[str], Callable[[int], None]]] = [
            ({"cold", "fresh", "warm-young"}, self.young),
            ({"warm"}, self.warm),
            ({"roundtrip"}, self.roundtrip),
            ({"multi-abi"}, self.multi_abi),
        ]
        if set(LOCKED_SCENARIOS) & set(self.plan.scenarios):
            steps.append(
                (
                    set(LOCKED_SCENARIOS),
                    ReleaseDay(self, self.plan.released, self.plan.upgraded).run,
                )
            )
        for rep in range(1, self.plan.reps + 1):
            rep_started = time.monotonic()
            once = 0.0
            for scenarios, step in steps:
                if scenarios & set(self.plan.scenarios):
                    step_started = time.monotonic()
                    step(rep)
                    if step == self.multi_abi:
                        once += time.monotonic() - step_started
            elapsed = time.monotonic() - began
            repeated = time.monotonic() - rep_started - once
            left = self.plan.reps - rep
            self.progress(
                f"== repetition {rep}/{self.plan.reps} done: {elapsed / 60:.1f} min elapsed, "
                f"this repetition {(time.monotonic() - rep_started) / 60:.1f} min "
                f"(multi-abi {once / 60:.1f}); projected total "
                f"{(elapsed + left * repeated) / 60:.1f} min"
            )
            self.progress(
                "   time by phase: "
                + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(self.phases.items()))
            )
        return self.results


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
