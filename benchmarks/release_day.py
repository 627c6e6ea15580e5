"""Release day for a locked CI job: a lock, a cache restored hours later, one new release.

Most days a locked job with 60 dependencies meets at least one new release
(boto3 and botocore publish almost every weekday). The three scenarios install
a lock of the workload (every project pinned but ``fresh-probe``, the one it
leaves open), each contender from a copy of its cache filled once while the
index said ``max-age=1`` (as ``warm``), into a fresh venv; just before the
measured run:

- ``locked``: nothing changes (the job's own warm time);
- ``locked-pinned-release``: a new version of a project the lock pins is published
  (``boto3`` 1.44.6 by default: ``--released``); its page changes, the answer cannot;
- ``locked-new-version``: ``fresh-probe`` 1.1 is published; every contender must
  install it (an older one is STALE);
- ``locked-upgrade``: the half-warm day after a dependency upgrade: new versions of
  three pinned projects are published (``--upgraded``) and the lock is upgraded to
  them; the cache restored is the old lock's (most wheels are there, three are new,
  nothing is recorded for the new lock).

The lock is what ``uv pip compile`` makes of ``--requirements`` for the
benchmark's interpreter, written before the first run, off the clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import Version

from pipfresh.testing.dists import build_wheel

from .harness import PROBE, Snapshot, base_env, run_checked, uv_binary

if TYPE_CHECKING:
    from .scenarios import Runner

LOCKED = "locked"
PINNED_RELEASE = "locked-pinned-release"
NEW_VERSION = "locked-new-version"
UPGRADE = "locked-upgrade"
LOCKED_SCENARIOS = (LOCKED, PINNED_RELEASE, NEW_VERSION, UPGRADE)

DESCRIPTIONS = {
    LOCKED: (
        "A lock of the workload (every project pinned but fresh-probe), each contender's "
        "cache filled while the index said max-age=1 (as warm), a fresh venv; nothing "
        "published since: the locked job's warm time."
    ),
    PINNED_RELEASE: (
        "As locked, and a new version of a project the lock pins published just before "
        "the run: its page changed, the answer did not."
    ),
    NEW_VERSION: (
        "As locked, and fresh-probe 1.1 (the project the lock leaves unpinned) published "
        "just before the run: it must be installed (anything else is STALE)."
    ),
    UPGRADE: (
        "As locked, and the lock upgraded to new versions of three projects it pins, "
        "published just before the run (half warm: the cache is the old lock's)."
    ),
}


def next_version(version: str) -> str:
    """The release after ``version``: its last release component plus one (``2.9.0.post0`` -> 2.9.1)."""
    release = list(Version(version).release)
    release[-1] += 1
    return ".".join(map(str, release))


def pins(lock: Path) -> dict[str, str]:
    """Canonical name -> pinned version of each ``name==version`` line."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.split("#")[0].split(";")[0].strip().partition("==")
        if sep:
            found[canonicalize_name(name)] = version.strip()
    return found


def write_lock(runner: Runner) -> Path:
    """``uv pip compile`` of the workload for the plan's interpreter, ``fresh-probe`` left open."""
    work = runner.work / "lock"
    work.mkdir(parents=True, exist_ok=True)
    compiled = work / "compiled.txt"
    argv = [uv_binary(), "pip", "compile", str(runner.requirements), "-o", str(compiled)]
    argv += ["--python", str(runner.plan.python), "--index-url", runner.served.url]
    argv += ["--no-header", "--no-annotate", "--cache-dir", str(work / "uv-cache")]
    run_checked(argv, env=base_env(runner.work))
    lines = []
    for line in compiled.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name = line.split("==")[0].strip()
            lines.append(PROBE if canonicalize_name(name) == PROBE else line.strip())
    lock = work / "requirements-locked.txt"
    lock.write_text("\n".join(lines) + "\n")
    return lock


class ReleaseDay:
    """The three scenarios on a :class:`scenarios.Runner`: its contenders, venvs and index."""

    def __init__(self, runner: Runner, released: str, upgraded: tuple[str, ...] = ()) -> None:
        self.runner = runner
        self.lock = write_lock(runner)
        locked = pins(self.lock)
        name = canonicalize_name(released)
        if name not in locked:
            raise SystemExit(f"--released {released}: the lock does not pin it")
        self.wheel = build_wheel(
            runner.work / "released", name.replace("-", "_"), next_version(locked[name])
        )
        self.upgrades, self.upgraded_lock = _upgrade(runner.work, self.lock, upgraded)
        self.pages = len(locked) + 1  # and fresh-probe's
        self.caches: dict[str, Snapshot] = runner.fill_aged(LOCKED_SCENARIOS, "locked", self.lock)

    def run(self, rep: int) -> None:
        """Each scenario, contenders in the repetition's order, the change published around each run."""
        r = self.runner
        for scenario in LOCKED_SCENARIOS:
            if scenario not in r.plan.scenarios:
                continue
            for c in r._order(r.plan.runs(scenario), rep):
                cache = r._copy(self.caches[c.family])
                self._publish(scenario)
                try:
                    extra = {"lock_pages": float(self.pages)}
                    lock = self.upgraded_lock if scenario == UPGRADE else self.lock
                    r._run(c, scenario, rep, cache, extra=extra, requirements=lock)
                finally:
                    self._unpublish(scenario)
                r._check(self.caches[c.family], c)

    def _publish(self, scenario: str) -> None:
        if scenario == PINNED_RELEASE:
            self.runner.served.index.publish(self.wheel)
        elif scenario == NEW_VERSION:
            self.runner.served.publish_new_probe()
        elif scenario == UPGRADE:
            self.runner.served.index.publish(*self.upgrades)

    def _unpublish(self, scenario: str) -> None:
        if scenario == PINNED_RELEASE:
            self.runner.served.index.unpublish(self.wheel.name)
        elif scenario == NEW_VERSION:
            self.runner.served.unpublish_new_probe()
        elif scenario == UPGRADE:
            for wheel in self.upgrades:
                self.runner.served.index.unpublish(wheel.name)


def _upgrade(work: Path, lock: Path, names: tuple[str, ...]) -> tuple[list[Path], Path]:
    """A new version of each of ``names`` (pure wheels, off the clock) and the lock with
    its pins moved to them."""
    locked = pins(lock)
    new = {}
    for name in map(canonicalize_name, names):
        if name not in locked:
            raise SystemExit(f"--upgraded {name}: the lock does not pin it")
        new[name] = next_version(locked[name])
    wheels = [build_wheel(work / "upgraded", n.replace("-", "_"), v) for n, v in new.items()]
    lines = []
    for line in lock.read_text().splitlines():
        name = canonicalize_name(line.split("==")[0].strip()) if "==" in line else None
        lines.append(f"{name}=={new[name]}" if name in new else line)
    upgraded = work / "lock" / "requirements-upgraded.txt"
    upgraded.write_text("\n".join(lines) + "\n")
    return wheels, upgraded
