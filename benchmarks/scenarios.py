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

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .harness import (
    Contender,
    Measurement,
    Pipfresh,
    RunContext,
    Served,
    Venvs,
    copy_cache,
    disk_usage,
    measure,
    run_checked,
)
from .harness import archive as make_archive
from .harness import restore as restore_archive

SCENARIOS = ("cold", "fresh", "warm-young", "warm", "roundtrip", "multi-abi")

AGED_MAX_AGE = 1
"""max-age the index announces while filling the ``warm`` cache."""


@dataclass
class Plan:
    """What to run: contenders, scenarios, repetitions, interpreters."""

    contenders: Sequence[Contender]
    scenarios: Sequence[str]
    reps: int
    python: Path
    python_version: str
    multi_pythons: dict[str, Path]
    multi_contenders: Sequence[str] = ("pip", "uv", "pipfresh")
    roundtrip_contenders: Sequence[str] = ("pip", "uv", "pipfresh")
    multi_reps: int = 1
    """multi-abi is four installs per contender: by default it runs in the first repetition only."""
    warm_extra: Sequence[Contender] = field(
        default_factory=lambda: [Pipfresh("pipfresh (pages pruned)")]
    )
    """Warm-only variants: pipfresh after ``pipfresh cache prune`` (index pages dropped)."""


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
        self._old: dict[str, Path] = {}
        self._runs = 0

    # -- plumbing ----------------------------------------------------------------

    def _ctx(self, venv: Path, cache: Path) -> RunContext:
        return RunContext(venv, cache, self.served.url, self.requirements, self.work)

    def _cache_dir(self, label: str) -> Path:
        path = self.work / "caches" / label
        shutil.rmtree(path, ignore_errors=True)
        return path

    def _run(
        self,
        contender: Contender,
        scenario: str,
        rep: int,
        cache: Path,
        python: Path | None = None,
        python_version: str | None = None,
        extra: dict[str, float] | None = None,
    ) -> Measurement:
        venv = self.venvs.fresh(python or self.plan.python)
        self._runs += 1
        slug = contender.name.replace(" ", "").replace("(", "-").replace(")", "")
        log = self.work / "logs" / f"{self._runs:03d}-{scenario}-{slug}.log"
        m = measure(
            contender,
            self._ctx(venv, cache),
            self.served,
            scenario=scenario,
            python=python_version or self.plan.python_version,
            rep=rep,
            log=log,
            extra=extra,
        )
        self.results.append(m)
        if self.on_result is not None:
            self.on_result(m)
        flag = "" if m.exit_code == 0 else f" EXIT {m.exit_code} (see {log})"
        flag += " STALE" if m.stale else ""
        self.progress(
            f"[{scenario} #{rep} py{m.python}] {contender.name:24s} {m.wall:6.1f}s "
            f"cpu {m.cpu:5.1f}s  req {m.requests:4d} (200 {m.index_200}, 304 {m.index_304}, "
            f"files {m.files}, meta {m.metadata})  {m.bytes / 1e6:7.1f} MB  "
            f"cache {m.cache_bytes / 1e6:6.1f} MB  probe {m.probe}{flag}"
        )
        shutil.rmtree(venv, ignore_errors=True)
        return m

    def _order(self, items: Sequence[Contender], rep: int) -> list[Contender]:
        k = rep % len(items) if items else 0
        return [*items[k:], *items[:k]]

    def _prune(self, contender: Contender, cache: Path) -> None:
        cmd = contender.ci_prune(self._ctx(self.work, cache))
        if cmd is not None:
            run_checked(cmd, env=contender.env(self._ctx(self.work, cache)))

    # -- preparation ---------------------------------------------------------------

    def fill_old(self) -> None:
        """One fill per cache family while pages say max-age=1; then wait them out."""
        families: dict[str, Contender] = {}
        for c in self._cached(self.plan.contenders):
            families.setdefault(c.family, c)
        if not families or not {"warm", "roundtrip"} & set(self.plan.scenarios):
            return
        index = self.served.index
        saved_max_age = index.page_max_age
        index.page_max_age = AGED_MAX_AGE
        try:
            for family, contender in families.items():
                cache = self._cache_dir(f"old-{family}")
                m = self._run(contender, "fill", 0, cache)
                if m.exit_code != 0:
                    raise RuntimeError(f"filling the {family} cache failed")
                self._old[family] = cache
        finally:
            index.page_max_age = saved_max_age
        time.sleep(AGED_MAX_AGE + 1)

    def _cached(self, contenders: Sequence[Contender]) -> list[Contender]:
        return [c for c in contenders if c.uses_cache]

    # -- scenarios -----------------------------------------------------------------

    def young(self, rep: int) -> None:
        """cold, then fresh and warm-young from copies of its cache, contender by contender.

        Back to back, so the young cache is as old as one or two runs (well inside
        max-age even on a slow machine), and every contender's is equally old.
        """
        wanted = set(self.plan.scenarios)
        for c in self._order(self.plan.contenders, rep):
            cache = self._cache_dir(f"cold-{c.name}")
            scenario = "cold" if "cold" in wanted else "fill"
            self._run(c, scenario, rep if scenario == "cold" else 0, cache)
            filled = time.time()
            if "fresh" in wanted:
                run = copy_cache(cache, self.work / "caches" / "run") if c.uses_cache else cache
                self.served.publish_new_probe()
                try:
                    age = time.time() - filled
                    self._run(c, "fresh", rep, run, extra={"cache_age": age})
                finally:
                    self.served.unpublish_new_probe()
            if "warm-young" in wanted and c.uses_cache:
                run = copy_cache(cache, self.work / "caches" / "run")
                age = time.time() - filled
                self._run(c, "warm-young", rep, run, extra={"cache_age": age})
            shutil.rmtree(cache, ignore_errors=True)

    def warm(self, rep: int) -> None:
        extra = [c for c in self.plan.warm_extra if c.family in self._old]
        contenders = [*self._cached(self.plan.contenders), *extra]
        for c in self._order(contenders, rep):
            cache = copy_cache(self._old[c.family], self.work / "caches" / "run")
            if c in self.plan.warm_extra:
                self._prune(c, cache)
            self._run(c, "warm", rep, cache)

    def roundtrip(self, rep: int) -> None:
        chosen = [
            c
            for c in self._cached(self.plan.contenders)
            if c.name in self.plan.roundtrip_contenders
        ]
        for c in self._order(chosen, rep):
            cache = copy_cache(self._old[c.family], self.work / "caches" / "run")
            started = time.perf_counter()
            self._prune(c, cache)
            pruned = time.perf_counter()
            target = self.work / "cache.tar.zst"
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

    def multi_abi(self, rep: int) -> None:
        if rep > self.plan.multi_reps:
            return
        chosen = [
            c for c in self._cached(self.plan.contenders) if c.name in self.plan.multi_contenders
        ]
        caches = {c.name: self._cache_dir(f"multi-{c.name}") for c in chosen}
        for version, python in self.plan.multi_pythons.items():
            for c in self._order(chosen, rep):
                self._run(c, "multi-abi", rep, caches[c.name], python, version)
        for c in chosen:
            shutil.rmtree(caches[c.name], ignore_errors=True)

    # -- everything ----------------------------------------------------------------

    def run(self) -> list[Measurement]:
        self.fill_old()
        steps: list[tuple[set[str], Callable[[int], None]]] = [
            ({"cold", "fresh", "warm-young"}, self.young),
            ({"warm"}, self.warm),
            ({"roundtrip"}, self.roundtrip),
            ({"multi-abi"}, self.multi_abi),
        ]
        for rep in range(1, self.plan.reps + 1):
            for scenarios, step in steps:
                if scenarios & set(self.plan.scenarios):
                    step(rep)
        return self.results


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"
