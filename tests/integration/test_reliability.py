"""Reliability end to end: real pip runs meeting parallel runs, kills, corrupt and foreign caches.

Every test drives ``python -m pipfresh`` as a process against the loopback index
and then looks at the cache with pipfresh's own reader: nothing a run leaves
behind may be half-written, and nothing outside the cache root may be touched.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import helpers
from conftest import MakeVenv, python_for
from helpers import index_args, installed_version, pipfresh
from pipfresh.pip import httpcache
from pipfresh.store import install
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex

# -- shared workload --------------------------------------------------------------------

WANTED = {"app": "1.0", "lib": "1.2", "built": "0.3", "big": "2.0"}


def publish_workload(index: PackageIndex, dist_dir: Path) -> None:
    """A wheel with dependencies, two versions of one, an sdist to build, a bigger wheel."""
    noise = os.urandom(400_000).hex()  # ~800 kB that does not compress much
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1", "built", "big"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_wheel(dist_dir, "lib", "1.2"),
        build_sdist(dist_dir, "built", "0.3"),
        build_wheel(dist_dir, "big", "1.0"),
        build_wheel(dist_dir, "big", "2.0", modules={"big/__init__.py": f"DATA = {noise!r}\n"}),
    )


def cache_root() -> Path:
    return Path(os.environ["PIPFRESH_CACHE_DIR"])


def partitions(root: Path) -> list[Path]:
    top = root / "partitions-v1"
    return sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []


@dataclass
class Health:
    """What pipfresh's reader finds in every HTTP entry and built wheel of a cache root."""

    good: int
    problems: list[tuple[str, str]]
    bad_wheels: list[str]

    def broken(self, *, ignore: Iterable[httpcache.Problem] = ()) -> list[tuple[str, str]]:
        skip = {p.value for p in ignore}
        return [(k, p) for k, p in self.problems if p not in skip]


def inspect_cache(root: Path) -> Health:
    import zipfile

    good, problems, bad_wheels = 0, [], []
    for part in partitions(root):
        for http_dir in ("http", "http-v2"):
            directory = part / "pip" / http_dir
            if not directory.is_dir():
                continue
            for entry in httpcache.iter_entry_files(directory):
                _response, problem = httpcache.check_entry(entry)
                if problem is None:
                    good += 1
                else:
                    problems.append((f"{http_dir}/{entry.key}", problem.value))
        for wheel in (part / "pip" / "wheels").rglob("*.whl"):
            try:
                with zipfile.ZipFile(wheel) as archive:
                    if archive.testzip() is not None:
                        bad_wheels.append(str(wheel))
            except (OSError, zipfile.BadZipFile):
                bad_wheels.append(str(wheel))
    return Health(good, problems, bad_wheels)


def assert_installed(python: Path, wanted: dict[str, str] = WANTED) -> None:
    got = {name: installed_version(python, name) for name in wanted}
    assert got == wanted


def popen_pipfresh(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """pipfresh in its own session, so a test can signal it and its pip like a terminal does."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipfresh", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or dict(os.environ),
        start_new_session=True,
    )


def _response_kind(response: httpcache.CachedResponse | None) -> str:
    assert response is not None
    return response.kind.value


def prune_json(*extra: str) -> dict[str, dict[str, object]]:
    run = pipfresh("cache", "prune", "--all", "--json", *extra).ok()
    data: dict[str, dict[str, object]] = json.loads(run.stdout)
    return data


# -- 1. concurrency ---------------------------------------------------------------------


@pytest.mark.slow
def test_parallel_installs_with_prune_and_info_in_the_middle(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """8 installs on one partition at once (two pip formats), a prune and an info meanwhile."""
    publish_workload(index, dist_dir)
    index.latency = 0.15  # every response a little late: the runs overlap for seconds
    python = python_for("23.0.1")  # one interpreter, so one partition, for both formats
    venvs = [make_venv(python, pip=None) for _ in range(6)]
    venvs += [make_venv(python, pip="26.3"), make_venv(python, pip="23.0.1")]
    # Overlapping requirements: all share lib/built/big; half pin the older lib.
    reqs = [["app"] if i % 2 == 0 else ["app", "lib==1.0"] for i in range(len(venvs))]
    # Three of them take the fast path: concurrent adds to the store as well.
    installers = ["store" if i in (1, 2, 5) else "pip" for i in range(len(venvs))]
    index.hold()  # every install stops at its first request, holding the partition
    installs = [
        popen_pipfresh(
            "install",
            "--python",
            v.python,
            *index_args(index),
            *r,
            env={**os.environ, "PIPFRESH_INSTALLER": how},
        )
        for v, r, how in zip(venvs, reqs, installers)
    ]
    assert index.wait_held(len(installs)), "not every install reached the index"

    impatient = pipfresh(
        "cache", "prune", "--all", env={**os.environ, "PIPFRESH_LOCK_TIMEOUT": "0.5"}
    )
    info = pipfresh("cache", "info", "--all", "--json").ok()
    patient = popen_pipfresh("cache", "prune", "--all", "--json")
    assert patient.stderr is not None
    first_said = patient.stderr.readline()  # it says so once it has to wait
    assert first_said.startswith("pipfresh: waiting for running installs"), first_said
    assert patient.poll() is None  # and waits as long as the installs hold the partition
    index.release()
    outs = [p.communicate(timeout=300) for p in installs]
    prune_out, prune_err = patient.communicate(timeout=300)

    for proc, (out, err), how in zip(installs, outs, installers):
        assert proc.returncode == 0, f"{out}\n{err}"
        assert f"installer {how}" in err.splitlines()[-1], err
    for venv, r in zip(venvs, reqs):
        assert_installed(venv.python, {**WANTED, "lib": "1.0" if "lib==1.0" in r else "1.2"})

    assert impatient.code == 2
    said = impatient.stderr.splitlines()
    assert said[0].startswith("pipfresh: waiting for running installs"), said
    assert said[-1].startswith("pipfresh: error: gave up after") and len(said) == 2, said
    assert "PIPFRESH_LOCK_TIMEOUT" in said[-1]
    assert isinstance(json.loads(info.stdout), list)

    assert patient.returncode == 0, prune_err
    removed = json.loads(prune_out)
    (pid,) = removed
    assert "broken" not in removed[pid]["removed"], removed  # no run left a corrupt entry
    assert "temporary" not in removed[pid]["removed"], removed
    health = inspect_cache(cache_root())
    assert health.problems == [] and health.bad_wheels == [] and health.good >= 6
    assert _store_problems(cache_root()) == []

    # The pruned cache still serves a new venv without downloading or building anything.
    index.latency = 0.0
    index.reset_counters()
    last = make_venv(python, pip=None)
    run = helpers.install(last, "app", summary=tmp_path / "s.json", index=index).ok()
    assert_installed(last.python)
    assert index.counters().file_bytes == 0
    assert run.summary is not None and run.summary["built"] == 0


# -- 2. interrupted runs ----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _pip_children(pid: int) -> list[int]:
    """The ``python -m pip`` processes pipfresh started."""
    found = []
    for child in _children(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pip" in argv and b"-m" in argv:
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _files(top: Path, suffix: str = "") -> int:
    count = 0
    for _dirpath, _dirnames, filenames in os.walk(top):
        count += sum(1 for name in filenames if name.endswith(suffix))
    return count


def _group_cmdlines(pgid: int) -> list[bytes]:
    """Command lines of every process in the process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                found.append((entry / "cmdline").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
    return found


@dataclass
class KillPoint:
    """A moment of a run, recognised from outside: the run is killed as soon as it is seen."""

    name: str
    seen: Callable[[subprocess.Popen[str], Path, dict[str, object]], bool]


def _part_dir(root: Path, sub: str) -> Path:
    found = list((root / "partitions-v1").glob(f"*/{sub}"))
    return found[0] if found else root / "none"


def _kill_points(total_files: int, installer: str) -> list[KillPoint]:
    def http_files(at_least: int) -> Callable[..., bool]:
        return lambda proc, root, state: _files(_part_dir(root, "pip/http-v2")) >= at_least

    def pip_done(proc: subprocess.Popen[str], root: Path, state: dict[str, object]) -> bool:
        running = bool(_pip_children(proc.pid))
        state["pip"] = bool(state.get("pip")) or running
        return bool(state["pip"]) and not running

    def store_names(root: Path) -> list[str]:
        try:
            return os.listdir(_part_dir(root, "pipfresh/store-v1"))
        except OSError:
            return []

    generic = [
        KillPoint("at once", lambda proc, root, state: True),
        KillPoint("lock taken", lambda proc, root, state: _files(root / "locks-v1") > 0),
        KillPoint("pip started", lambda proc, root, state: bool(_pip_children(proc.pid))),
        KillPoint("first cache write", http_files(1)),
        KillPoint("a temporary file", lambda proc, root, state: _files(root, ".tmp") > 0),
        KillPoint("half cached", http_files(max(3, total_files // 2))),
        KillPoint(
            "building the sdist",
            lambda proc, root, state: any(b"_in_process" in c for c in _group_cmdlines(proc.pid)),
        ),
        KillPoint(
            "built wheel cached",
            lambda proc, root, state: _files(_part_dir(root, "pip/wheels")) > 0,
        ),
        KillPoint("most cached", http_files(max(4, total_files * 3 // 4))),
        KillPoint("pip done, pipfresh accounting", pip_done),
    ]
    if installer == "pip":
        return generic
    keep = {"at once", "pip started", "building the sdist"}
    return [p for p in generic if p.name in keep] + [
        KillPoint(
            "store staging a wheel",
            lambda proc, root, state: any(n.startswith(".tmp-") for n in store_names(root)),
        ),
        KillPoint(
            "store entry published",
            lambda proc, root, state: any(not n.startswith(".") for n in store_names(root)),
        ),
        KillPoint(
            "linking into the venv",
            lambda proc, root, state: any(Path(str(state["venv"])).glob("lib/*/site-packages/app")),
        ),
        KillPoint("pip done, pipfresh accounting", pip_done),
    ]


def _store_problems(root: Path) -> list[str]:
    """Store entries that are unreadable or changed, and staging left behind."""
    from pipfresh.store.entries import Store

    top = _part_dir(root, "pipfresh/store-v1")
    if not top.is_dir():
        return []
    store, bad = Store(top), []
    for name in os.listdir(top):
        if name.startswith("."):
            bad.append(f"staging {name}")
            continue
        entry = store.get(name)
        if entry is None or not entry.intact():
            bad.append(f"entry {name}")
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pip", "store"])
def test_sigkill_at_many_points_then_next_run_succeeds(
    installer: str, index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """Kill pipfresh and its pip (the whole process group) at points spread over a cold run.

    Each point is recognised from outside (a file appears, pip starts, the build
    backend runs...), so the kill lands in that phase however loaded the machine is.
    Each point gets its own cache root, so every kill meets a cold run; two points run
    at once to keep the test short. ``store`` is the fast path (PIPFRESH_INSTALLER).
    """
    from concurrent.futures import ThreadPoolExecutor

    publish_workload(index, dist_dir)
    base = {**os.environ, "PIPFRESH_INSTALLER": installer}
    reference = tmp_path / "reference"
    env = {**base, "PIPFRESH_CACHE_DIR": str(reference)}
    python = make_venv(pip=None).python
    helpers.install(python, "app", env=env, index=index).ok()
    points = _kill_points(_files(reference / "partitions-v1", ".body") * 2, installer)
    victims = [(make_venv(pip=None), make_venv(pip=None)) for _ in points]

    def kill_then_rerun(k: int) -> str:
        root = tmp_path / f"root{k}"
        env = {**base, "PIPFRESH_CACHE_DIR": str(root)}
        victim, after = victims[k]
        proc = popen_pipfresh(
            "install", "--python", victim.python, *index_args(index), "app", env=env
        )
        state: dict[str, object] = {"venv": victim.path}
        while proc.poll() is None and not points[k].seen(proc, root, state):
            time.sleep(0.002)
        outcome = "finished" if proc.poll() is not None else "killed"
        if outcome == "killed":
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert _group_gone(proc.pid, 10)

        helpers.install(after, "app", env=env, index=index).ok()
        assert_installed(after.python)
        # Whatever the kill left is only what a prune removes; then all is whole.
        pipfresh("cache", "prune", "--all", env=env).ok()
        health = inspect_cache(root)
        assert health.problems == [] and health.bad_wheels == [], (points[k].name, health)
        assert _store_problems(root) == [], points[k].name
        leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == [], (points[k].name, leftovers)
        return outcome

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(
            zip((p.name for p in points), pool.map(kill_then_rerun, range(len(points))))
        )
    print(f"kill points ({installer}): {outcomes}")
    if installer == "store":
        assert _part_dir(reference, "pipfresh/store-v1").is_dir()  # the fast path did run
    # Fleeting moments (a temporary file, pip's last instant) may be missed; the rest not.
    assert list(outcomes.values()).count("killed") >= len(points) - 2, outcomes


KILLED_PLAN_WRITE = """
import os, sys
from pathlib import Path
from pipfresh.store import install
from pipfresh.store.entries import Store
entry = Store(Path(sys.argv[1])).get(sys.argv[2])
os.replace = lambda *args: os._exit(9)  # killed after writing the plan, before renaming it
install.Plan.make(entry).save(entry)
"""


def _tree_names(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")}


def test_a_plan_write_killed_halfway_leaves_what_the_next_run_removes(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """What a run killed while linking leaves of an install plan goes with the next run."""
    index.publish(build_wheel(dist_dir, "lib", "1.0"))
    env = {**os.environ, "PIPFRESH_INSTALLER": "store"}
    first = make_venv(pip=None)
    helpers.install(first, "lib", env=env, index=index).ok()
    (store,) = cache_root().glob("partitions-v1/*/pipfresh/store-v1")
    (entry,) = [p for p in store.iterdir() if not p.name.startswith(".")]
    (entry / install.PLAN_FILE).unlink()  # the next install plans again
    before = _tree_names(store)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PLAN_WRITE, str(store), entry.name], capture_output=True
    )
    assert killed.returncode == 9, killed.stderr
    left = _tree_names(store) - before
    assert left, "the killed write left nothing to look for"

    again = make_venv(pip=None)
    helpers.install(again, "lib", env=env, index=index).ok()
    assert installed_version(again.python, "lib") == "1.0"
    assert left.isdisjoint(_tree_names(store)), left
    assert (entry / install.PLAN_FILE).is_file()
    assert [p for p in cache_root().rglob("*") if p.name.endswith(".tmp")] == []
    assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_killing_pipfresh_alone_keeps_prune_away_from_its_pip(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """A CI runner that kills only the parent: the orphaned pip still holds the partition."""
    publish_workload(index, dist_dir)
    index.latency = 0.1
    venv = make_venv(pip=None)
    # Plain pip: the install itself is the orphaned process (the store path would lose it).
    plain = {**os.environ, "PIPFRESH_INSTALLER": "pip"}
    index.hold()  # pip stops at its first request: it runs until the test lets it go
    proc = popen_pipfresh("install", "--python", venv.python, *index_args(index), "app", env=plain)
    assert index.wait_held(), "pip never asked the index"
    pip_pids = _pip_children(proc.pid)
    assert pip_pids, "the request did not come from pipfresh's pip"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)  # not communicate(): the orphaned pip still holds the pipes
    assert _alive(pip_pids[0])

    prune = popen_pipfresh("cache", "prune", "--all", "--json")
    assert prune.stderr is not None
    first_said = prune.stderr.readline()
    assert first_said.startswith("pipfresh: waiting for running installs"), first_said
    assert prune.poll() is None and _alive(pip_pids[0])  # the orphaned pip holds the partition
    index.release()
    _out, err = prune.communicate(timeout=120)
    assert prune.returncode == 0, err
    assert not _alive(pip_pids[0])  # the prune ran only after the orphaned pip was done
    proc.communicate(timeout=30)
    assert_installed(venv.python)  # and that pip finished its install
    health = inspect_cache(cache_root())
    assert health.problems == [] and health.bad_wheels == []


@pytest.mark.slow
def test_ctrl_c_exits_promptly_with_pips_status_and_leaves_nothing(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    publish_workload(index, dist_dir)
    index.latency = 0.1
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    venv = make_venv(pip="26.3")  # that pip's answer to Ctrl-C, whichever pip runs the tests
    proc = popen_pipfresh(
        "install",
        "--python",
        venv.python,
        *index_args(index),
        "app",
        "--summary-json",
        tmp_path / "s.json",
        env=env,
    )
    deadline = time.monotonic() + 60
    while index.counters().total_requests < 3:  # pip is well inside its install command
        assert time.monotonic() < deadline and proc.poll() is None, "pip never asked the index"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _out, err = proc.communicate(timeout=10)  # prompt: within the 10 s bound
    assert _group_gone(proc.pid, 5)
    assert proc.returncode == 1, err  # pip's status after Ctrl-C (ERROR), passed through
    assert "Operation cancelled by user" in err
    assert [line for line in err.splitlines() if line.startswith("pipfresh:")] == [
        "pipfresh: interrupted (pip's dry run)"
    ], err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit_code"] == 1 and summary["interrupted"] == "pip's dry run"
    assert list(scratch.iterdir()) == []  # pip and pipfresh removed their temporary dirs

    pipfresh("cache", "prune", "--all").ok()
    health = inspect_cache(cache_root())
    assert health.problems == [] and health.bad_wheels == []
    assert [p for p in cache_root().rglob("*") if p.name.endswith(".tmp")] == []
    again = make_venv(pip=None)
    helpers.install(again, "app", index=index).ok()
    assert_installed(again.python)


# -- 3. corrupt caches ------------------------------------------------------------------

MUTATIONS = (
    "truncate-meta",
    "garbage-meta",
    "empty-meta",
    "delete-meta",
    "truncate-body",
    "empty-body",
    "delete-body",
    "wrong-encoding",
)


def _rewrite_headers(meta: Path, encoding: str) -> None:
    """Declare a Content-Encoding the body does not have, in pip's own cc=4 msgpack."""
    import msgpack

    blob = meta.read_bytes()
    prefix, _, packed = blob.partition(b",")
    data = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    headers = data["response"]["headers"]
    for name in [k for k in headers if k.lower() == "content-encoding"]:
        del headers[name]
    headers["Content-Encoding"] = encoding
    meta.write_bytes(prefix + b"," + msgpack.packb(data, use_bin_type=True))


def corrupt(entry: httpcache.EntryFiles, how: str, seed: int) -> None:
    """Apply one mutation to an http-v2 entry (meta + body); ``seed`` picks its details."""
    import random

    assert entry.meta is not None and entry.body is not None
    meta, body = entry.meta, entry.body
    rng = random.Random(seed)
    if how == "truncate-meta":
        meta.write_bytes(meta.read_bytes()[: rng.randrange(1, meta.stat().st_size)])
    elif how == "garbage-meta":
        meta.write_bytes(rng.randbytes(rng.randrange(1, 300)))
    elif how == "empty-meta":
        meta.write_bytes(b"")
    elif how == "delete-meta":
        meta.unlink()
    elif how == "truncate-body":
        body.write_bytes(body.read_bytes()[: rng.randrange(1, body.stat().st_size)])
    elif how == "empty-body":
        body.write_bytes(b"")
    elif how == "delete-body":
        body.unlink()
    elif how == "wrong-encoding":
        current = httpcache.check_entry(entry)[0]
        assert current is not None
        choices = ["deflate"] if current.content_encoding == "gzip" else ["gzip", "deflate"]
        _rewrite_headers(meta, rng.choice(choices))
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.slow
def test_corrupt_entries_are_dropped_fetched_again_and_reported(
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hypothesis picks entries of a warm cache and breaks them; every install still works."""
    import shutil

    from hypothesis import HealthCheck, Phase, example, given, settings
    from hypothesis import strategies as st

    publish_workload(index, dist_dir)
    template = tmp_path / "template"
    # pip's cache under plain pip: with the store, the damaged downloads would not be needed.
    monkeypatch.setenv("PIPFRESH_INSTALLER", "pip")
    env = {**os.environ, "PIPFRESH_CACHE_DIR": str(template)}
    helpers.install(make_venv(pip=None).python, "app", env=env, index=index).ok()
    (part,) = partitions(template)
    http_v2 = part / "pip" / "http-v2"
    keys = sorted(e.key for e in httpcache.iter_entry_files(http_v2))
    kinds = {
        e.key: _response_kind(httpcache.check_entry(e)[0])
        for e in httpcache.iter_entry_files(http_v2)
    }
    assert {"index-page", "wheel", "sdist"} <= set(kinds.values()), kinds
    needed = {
        f"{name}-{version}-py3-none-any.whl": httpcache.entry_path(
            http_v2, index.file_url(f"{name}-{version}-py3-none-any.whl")
        ).name
        for name, version in WANTED.items()
        if name != "built"
    }
    assert set(needed.values()) <= set(keys), (needed, keys)
    examples: list[tuple[dict[str, str], int]] = []
    calls = itertools.count()

    damage = st.lists(
        st.tuples(st.sampled_from(keys), st.sampled_from(MUTATIONS), st.integers(0, 2**32)),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[0],
    )

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a shrink would rerun pip for minutes
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(plan=damage)
    def one_example(plan: list[tuple[str, str, int]]) -> None:
        root = tmp_path / f"example{next(calls)}"
        shutil.copytree(template, root, symlinks=True)
        here = root / part.relative_to(template) / "pip" / "http-v2"
        broken: dict[str, str] = {}
        entries = {e.key: e for e in httpcache.iter_entry_files(here)}
        for key, how, seed in plan:
            corrupt(entries[key], how, seed)
            broken[key] = how
        problems = {e.key: httpcache.check_entry(e)[1] for e in httpcache.iter_entry_files(here)}
        assert all(problems.get(key) is not None for key in broken), (broken, problems)

        run_env = {**os.environ, "PIPFRESH_CACHE_DIR": str(root)}
        venv = make_venv(pip=None)
        index.reset_counters()
        run = helpers.install(
            venv,
            "app",
            env=run_env,
            summary=tmp_path / "s.json",
            index=index,
        ).ok()
        assert_installed(venv.python)
        # Every broken wheel this install needs was fetched again (not an sdist: its
        # built wheel serves).
        refetched = {name for name, key in needed.items() if key in broken}
        assert refetched <= set(index.counters().downloads), (broken, index.counters())
        # Nothing that could break pip is left; a body without metadata is only a
        # miss to pip (an entry this run did not need), and the next prune drops it.
        health = inspect_cache(root)
        assert health.broken(ignore=[httpcache.Problem.ORPHAN_BODY]) == [], (broken, health)
        assert health.bad_wheels == [], (broken, health)
        # `cache info` says what was dropped: the same count the run's summary gave.
        info = json.loads(pipfresh("cache", "info", "--all", "--json", env=run_env).ok().stdout)
        dropped = sum(info[0]["dropped"].values())
        assert run.summary is not None and dropped == run.summary["dropped"]
        assert dropped >= sum(1 for h in broken.values() if h != "delete-meta"), (broken, info)
        pipfresh("cache", "prune", "--all", env=run_env).ok()
        assert inspect_cache(root).problems == []
        examples.append((broken, dropped))
        shutil.rmtree(root)
        shutil.rmtree(venv.path)

    # Every mutation at least once, on a wheel this install needs: explicit examples.
    wheel = needed["big-2.0-py3-none-any.whl"]
    for n, how in enumerate(MUTATIONS):
        one_example = example(plan=[(wheel, how, n)])(one_example)
    one_example()
    assert len(examples) >= len(MUTATIONS) + 5
    entries = sum(len(broken) for broken, _ in examples)
    print(f"fuzzed {len(examples)} caches, {entries} entries broken, all installs correct")
    tried = {how for broken, _ in examples for how in broken.values()}
    assert tried == set(MUTATIONS), tried


STORE_DAMAGE = (
    "truncate-a-file",
    "edit-a-file-in-place",
    "delete-a-file",
    "chmod-a-file",
    "garbage-manifest",
    "delete-manifest",
    "empty-tree",
)


def _damage_store_entry(entry: Path, how: str) -> None:
    files = sorted(p for p in (entry / "tree").rglob("*.py") if p.is_file())
    victim = max(files, key=lambda p: p.stat().st_size)
    if how == "truncate-a-file":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif how == "edit-a-file-in-place":  # what an editor does to a hardlinked install
        with open(victim, "r+b") as f:
            f.write(b"raise SystemExit('edited')\n#")
    elif how == "delete-a-file":
        victim.unlink()
    elif how == "chmod-a-file":
        victim.chmod(0o600)
    elif how == "garbage-manifest":
        (entry / "manifest.json").write_bytes(b"\x00{not json")
    elif how == "delete-manifest":
        (entry / "manifest.json").unlink()
    elif how == "empty-tree":
        for path in sorted((entry / "tree").rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.slow
def test_damaged_store_entries_are_never_linked(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """The fast path's store meets damaged entries: each install still gets the wheel's bytes."""
    import zipfile

    publish_workload(index, dist_dir)
    env = {**os.environ, "PIPFRESH_INSTALLER": "store"}
    first = make_venv(pip=None)
    helpers.install(first, "app", env=env, index=index).ok()
    store = _part_dir(cache_root(), "pipfresh/store-v1")
    by_wheel = {}
    for entry in store.iterdir():
        manifest = json.loads((entry / "manifest.json").read_text())
        by_wheel[manifest["wheel"].split("-")[0]] = entry.name
    assert {"app", "lib", "big", "built"} <= set(by_wheel), by_wheel
    expected = {}
    with zipfile.ZipFile(next(dist_dir.glob("big-2.0-*.whl"))) as wheel:
        expected = {n: wheel.read(n) for n in wheel.namelist() if n.endswith(".py")}

    for how in STORE_DAMAGE:
        _damage_store_entry(store / by_wheel["big"], how)
        venv = make_venv(pip=None)
        run = helpers.install(venv, "app", env=env, index=index)
        assert run.code == 0, (how, run.stderr)
        assert_installed(venv.python)
        (site,) = venv.path.glob("lib/*/site-packages")
        got = {n: (site / n).read_bytes() for n in expected}
        assert got == expected, how
        assert _store_problems(cache_root()) == [], how


# -- 4. foreign caches ------------------------------------------------------------------

NOBODY = 65534


def _needs_root() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to hand the cache to another user")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="pipfresh-foreign-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _chown_tree(top: Path, uid: int) -> None:
    for path in [top, *top.rglob("*")]:
        os.lchown(path, uid, uid)


def _other_users_python() -> str:
    """An interpreter another user can run, of our minor version (pyenv's live under /root)."""
    import shutil

    name = "python{}.{}".format(*sys.version_info[:2])
    found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
    if found is None:
        pytest.skip(f"no {name} outside /root for another user to run")
    return found


def _venv_for(owner: int, where: Path) -> Path:
    """A venv without pip (pipfresh's pip installs into it) that ``owner`` can write."""
    base = sys.executable if owner == 0 else _other_users_python()
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True)
    _chown_tree(where, owner)
    return where / "bin" / "python"


def _pipfresh_as(
    uid: int, *args: str | Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run pipfresh (this checkout, these dependencies) as ``uid``, from a venv it can reach."""
    import site

    tool = Path(env["HOME"]) / "pipfresh-venv"
    if not tool.exists():
        subprocess.run(
            [_other_users_python(), "-m", "venv", "--without-pip", str(tool)], check=True
        )
        (purelib,) = tool.glob("lib/python*/site-packages")
        ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (purelib / "pipfresh-dev.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
        )
    return subprocess.run(
        [str(tool / "bin" / "python"), "-m", "pipfresh", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        user=uid,
        group=uid,
        extra_groups=[],
        timeout=300,
    )


def _warm_cache(index: PackageIndex, dist_dir: Path, root: Path) -> None:
    publish_workload(index, dist_dir)
    env = {**os.environ, "PIPFRESH_CACHE_DIR": str(root)}
    python = _venv_for(0, root.parent / "warm-venv")
    helpers.install(python, "app", env=env, index=index).ok()


def _env_for(uid: int, shared: Path, root: Path) -> dict[str, str]:
    home = shared / f"home-{uid}"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    _chown_tree(home, uid)
    return {
        **os.environ,
        "PIPFRESH_CACHE_DIR": str(root),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }


@pytest.mark.slow
def test_root_takes_over_a_cache_restored_by_another_user(
    index: PackageIndex, dist_dir: Path, shared_dir: Path
) -> None:
    """pip as root disables a cache root does not own; pipfresh repairs it and uses it."""
    _needs_root()
    root = shared_dir / "cache"
    _warm_cache(index, dist_dir, root)
    _chown_tree(root, NOBODY)
    (part,) = partitions(root)

    # The problem, shown with real pip: it silently gives up the cache.
    plain = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            shared_dir / "dl",
            "--cache-dir",
            part / "pip",
            *index_args(index),
            "lib",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cache has been disabled" in plain.stderr

    index.reset_counters()
    python = _venv_for(0, shared_dir / "venv")
    env = _env_for(0, shared_dir, root)
    run = helpers.install(python, "app", env=env, index=index).ok()
    assert_installed(python)
    assert "pipfresh: took ownership of" in run.stderr and "uid 65534" in run.stderr
    assert "disabled" not in run.stderr
    assert index.counters().file_bytes == 0  # the restored cache served every file
    assert {p.lstat().st_uid for p in [part, *part.rglob("*")]} == {0}


@pytest.mark.slow
def test_another_user_meets_a_root_owned_cache_and_installs_without_it(
    index: PackageIndex, dist_dir: Path, shared_dir: Path
) -> None:
    """Restored as root, run as a user: nothing to repair, one warning, a correct install."""
    _needs_root()
    root = shared_dir / "cache"
    _warm_cache(index, dist_dir, root)
    before = sorted((str(p), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    python = _venv_for(NOBODY, shared_dir / "venv")
    env = _env_for(NOBODY, shared_dir, root)
    run = _pipfresh_as(NOBODY, "install", "--python", python, *index_args(index), "app", env=env)
    assert run.returncode == 0, run.stderr
    assert_installed(python)
    warnings = [line for line in run.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, run.stderr
    assert warnings[0].startswith("pipfresh: warning:") and "chown -R 65534" in warnings[0]
    assert "runs without a cache" in warnings[0]
    after = sorted((str(p), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    assert after == before  # the other user's cache is left exactly as it was


@pytest.mark.slow
def test_read_only_modes_and_unreadable_entries_are_repaired(
    index: PackageIndex, dist_dir: Path, shared_dir: Path
) -> None:
    """A user's own cache restored with read-only modes, with root's unreadable files inside."""
    _needs_root()
    root = shared_dir / "cache"
    _warm_cache(index, dist_dir, root)
    _chown_tree(root, NOBODY)
    (part,) = partitions(root)
    http_v2 = part / "pip" / "http-v2"
    entries = list(httpcache.iter_entry_files(http_v2))
    foreign = [e.body for e in entries[:2]] + [entries[2].meta]
    for path in foreign:
        assert path is not None
        os.lchown(path, 0, 0)
        path.chmod(0o600)  # root's, unreadable by the user
    for path in [part, *part.rglob("*")]:
        if path.lstat().st_uid == NOBODY:
            path.chmod(0o555 if path.is_dir() else 0o444)

    python = _venv_for(NOBODY, shared_dir / "venv")
    env = _env_for(NOBODY, shared_dir, root)
    index.reset_counters()
    run = _pipfresh_as(NOBODY, "install", "--python", python, *index_args(index), "app", env=env)
    assert run.returncode == 0, run.stderr
    assert_installed(python)
    assert "pipfresh: repaired the permissions of" in run.stderr, run.stderr
    assert "warning" not in run.stderr.lower(), run.stderr
    # Only what was unreadable was fetched again; the rest of the restored cache served.
    assert index.counters().file_requests <= len(foreign), index.counters()
    assert all(os.access(p, os.W_OK) or p.is_file() for p in part.rglob("*"))
    health = inspect_cache(root)
    assert health.broken(ignore=[httpcache.Problem.ORPHAN_BODY]) == [], health


@pytest.mark.slow
def test_read_only_file_system_installs_without_the_cache(
    index: PackageIndex, dist_dir: Path, shared_dir: Path
) -> None:
    _needs_root()
    mount = shared_dir / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        root = mount / "cache"
        _warm_cache(index, dist_dir, root)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        python = _venv_for(0, shared_dir / "venv")
        run = helpers.install(
            python,
            "app",
            env=_env_for(0, shared_dir, root),
            index=index,
        ).ok()
        assert_installed(python)
        (warning,) = [line for line in run.stderr.splitlines() if "warning" in line.lower()]
        assert warning.startswith("pipfresh: warning:") and "read-only" in warning
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- 5. hostile paths -------------------------------------------------------------------


def _tree_state(top: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every path under ``top`` with its content (files) or target (links), never following."""
    state: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(top))
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_file():
                state[rel] = ("file", path.read_bytes())
            else:
                state[rel] = ("dir", "")
    return state


def _hostile_root(kind: str, tmp_path: Path) -> tuple[str, Path]:
    """A PIPFRESH_CACHE_DIR value pipfresh must not delete in, and the tree to watch."""
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    (home / ".bashrc").write_text("export PS1='$ '\n")
    (home / "project" / "notes.tmp").write_text("not a cache leftover\n")
    other = tmp_path / "other-tree"
    (other / "partitions-v1" / "x" / "pip").mkdir(parents=True)
    (other / "partitions-v1" / "x" / "pip" / "keep.tmp").write_text("precious\n")
    if kind == "root":
        return "/", Path("/")
    if kind == "home":
        return "~", home
    if kind == "file":
        (home / "a-file").write_text("data\n")
        return str(home / "a-file"), home
    if kind == "symlink-into-other-tree":
        (tmp_path / "link").symlink_to(other)
        return str(tmp_path / "link"), other
    if kind == "symlink-to-a-pipfresh-root":
        (other / ".pipfresh-root").write_text("pipfresh cache root; safe to delete\n")
        (tmp_path / "link").symlink_to(other)
        return str(tmp_path / "link"), other
    if kind == "not-created-by-pipfresh":
        return str(home), home
    if kind == "marker-is-a-symlink":
        (home / ".pipfresh-root").symlink_to(other / "partitions-v1")
        return str(home), home
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "root",
        "home",
        "file",
        "symlink-into-other-tree",
        "symlink-to-a-pipfresh-root",
        "not-created-by-pipfresh",
        "marker-is-a-symlink",
    ],
)
def test_prune_and_purge_refuse_a_hostile_cache_dir(kind: str, tmp_path: Path) -> None:
    value, watched = _hostile_root(kind, tmp_path)
    env = {**os.environ, "PIPFRESH_CACHE_DIR": value, "HOME": str(tmp_path / "home")}
    before = _tree_state(watched) if kind != "root" else None
    refused = [["prune", "--all"], ["prune", "--all", "--ci"], ["purge", "--all"], ["purge"]]
    if kind != "symlink-to-a-pipfresh-root":  # reading through a link to a real root is fine
        refused.append(["info", "--all"])
    for args in refused:
        run = pipfresh("cache", *args, env=env)
        assert run.code == 2, (args, run)
        (line,) = run.stderr.splitlines()
        assert line.startswith("pipfresh: error: "), line
        assert any(
            why in line for why in ("refusing", "pipfresh did not create", "not a directory")
        ), line
    if kind == "root":
        assert not Path("/.pipfresh-root").exists()
    else:
        after = _tree_state(watched)
        if kind == "symlink-to-a-pipfresh-root":  # a real root: the probe cache may appear
            after = {k: v for k, v in after.items() if not k.startswith("probes-v1")}
        assert after == before


@pytest.mark.slow
def test_links_planted_inside_a_real_root_are_never_followed(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """Links out of a genuine root, among its files: installs, prunes and purges remove
    the links, never their targets, and read nothing through them.

    A link where the layout has a directory (``partitions-v1``, a partition, ``pip/http``,
    ``selfcheck``...) is refused instead: tests/integration/test_integrity_links.py.
    """
    import shutil

    publish_workload(index, dist_dir)
    venv = make_venv(pip=None)
    helpers.install(venv, "app", index=index).ok()
    root = cache_root()
    (part,) = partitions(root)
    outside = tmp_path / "outside"
    shutil.copytree(part, outside / "partition-copy", symlinks=True)
    # Give the copy everything a prune drops: a broken entry and a leftover.
    copy_http = outside / "partition-copy" / "pip" / "http-v2"
    victim = next(e for e in httpcache.iter_entry_files(copy_http))
    assert victim.body is not None
    victim.body.write_bytes(b"")
    (outside / "partition-copy" / "pip" / "wheels" / "left.tmp").write_text("leftover\n")
    (outside / "wheels" / "broken").mkdir(parents=True)
    (outside / "wheels" / "broken" / "bad-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    (outside / "precious.tmp").write_text("precious\n")
    (outside / "record.json").write_text('{"runs": 99, "entries": {}, "python": "9.9"}\n')
    (outside / "log.jsonl").write_text("")

    # A body whose wheel the next install needs: served through the link, pip would
    # install the outside file's bytes.
    wheel_entry = next(
        e
        for e in httpcache.iter_entry_files(part / "pip" / "http-v2")
        if e.body is not None
        and _response_kind(httpcache.check_entry(e)[0]) == httpcache.Kind.WHEEL.value
    )
    assert wheel_entry.body is not None
    (outside / "other.body").write_bytes(wheel_entry.body.read_bytes()[::-1])
    again = make_venv(pip=None)
    probe = (
        root / "probes-v1" / f"{hashlib.sha256(str(again.python).encode()).hexdigest()[:32]}.json"
    )
    state = part / "pipfresh"
    free = next(c for c in "0123456789abcdef" if not (part / "pip" / "http-v2" / c).exists())
    links = {
        part / "pip" / "http-v2" / free: copy_http / victim.key[0],
        part / "pip" / "wheels" / "evil": outside / "wheels",
        part / "pip" / "left.tmp": outside / "precious.tmp",
        root / "locks-v1" / "cp311-evil.lock": outside / "precious.tmp",
        wheel_entry.body: outside / "other.body",
        state / "partition.json": outside / "record.json",
        state / "usage-v1.json": outside / "record.json",
        state / "verified-v1.json": outside / "record.json",
        state / "dropped-v1.jsonl": outside / "log.jsonl",
        state / "resolutions-v1" / f"{'0' * 64}.json": outside / "record.json",
        probe: outside / "record.json",
    }

    def plant() -> None:
        for link, target in links.items():
            link.unlink(missing_ok=True)
            link.symlink_to(target)

    plant()
    before = _tree_state(outside)

    helpers.install(again, "app", index=index).ok()
    assert_installed(again.python)
    assert _tree_state(outside) == before
    assert [p for p in part.rglob("*") if p.is_symlink()] == []  # the links, unlinked
    plant()
    info = json.loads(pipfresh("cache", "info", "--all", "--json").ok().stdout)
    assert info[0]["python"] != "9.9"  # partition.json was not read through its link
    for args in (["prune", "--all"], ["prune", "--all", "--ci"]):
        pipfresh("cache", *args).ok()
        assert _tree_state(outside) == before, args
    pipfresh("cache", "purge", "--all").ok()
    assert _tree_state(outside) == before
    assert not part.exists()  # the real partition was purged, its links with it


# -- 6. disk full -----------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs: the cache root that fills up."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_fails_as_pip_does_then_recovers_where_pip_stays_stuck(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, small_fs: Path
) -> None:
    """A 4 MB wheel fills a 3 MB cache: pip's half-written temporary file keeps it full.

    The first install fails exactly as plain pip does (the sdist's wheel cannot be built
    into the full cache). Plain pip then stays stuck; pipfresh removes the dead temporary
    files when it has the partition alone, and the next install succeeds.
    """
    publish_workload(index, dist_dir)
    blob = os.urandom(4_000_000)
    index.publish(build_wheel(dist_dir, "huge", "1.0", extra_files={"huge/blob.bin": blob}))
    plain_cache = small_fs / "plain"
    plain_cache.mkdir()

    def plain_pip(*reqs: str) -> int:  # pip 26.3 itself, with the cache on the small disk
        venv = make_venv(pip=None)
        argv = [sys.executable, "-m", "pip", "--python", str(venv.python), "install"]
        argv += ["--cache-dir", str(plain_cache), *index_args(index), *reqs]
        return subprocess.run(argv, capture_output=True, check=False).returncode

    env = {**os.environ, "PIPFRESH_CACHE_DIR": str(small_fs / "cache")}

    def with_pipfresh(*reqs: str) -> tuple[int, Path]:
        venv = make_venv(pip=None)
        run = helpers.install(venv, *reqs, env=env, index=index)
        return run.code, venv.python

    first_plain = plain_pip("app", "huge")
    subprocess.run(["rm", "-rf", str(plain_cache / "wheels")], check=True)  # same room for both
    second_plain = plain_pip("app")
    assert (first_plain, second_plain) == (1, 1)  # pip: stuck until someone cleans up
    subprocess.run(["rm", "-rf", str(plain_cache)], check=True)

    first, _ = with_pipfresh("app", "huge")
    assert first == first_plain
    health = inspect_cache(small_fs / "cache")
    # Consistent: what is left is a miss to pip (dropped by the next run's check), never
    # a half-written entry pip would read; pipfresh's own state has no half-written file.
    assert (
        health.broken(ignore=[httpcache.Problem.TEMP_FILE, httpcache.Problem.MISSING_BODY]) == []
    ), health
    assert health.bad_wheels == []
    (part,) = partitions(small_fs / "cache")
    assert [p for p in (part / "pipfresh").iterdir() if p.name.endswith(".tmp")] == []

    second, python = with_pipfresh("app")
    assert second == 0
    assert_installed(python, {k: v for k, v in WANTED.items()})
    assert inspect_cache(small_fs / "cache").problems == []


def test_prune_and_purge_refuse_a_partition_that_is_a_link(tmp_path: Path) -> None:
    """Without --all: the interpreter's own partition, planted as a link out of the root."""
    part = Path(pipfresh("cache", "dir").ok().stdout.strip())
    outside = tmp_path / "outside"
    (outside / "pip" / "selfcheck").mkdir(parents=True)
    (outside / "pip" / "selfcheck" / "state.json").write_text("{}\n")
    (outside / "pip" / "left.tmp").write_text("precious\n")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.symlink_to(outside)
    before = _tree_state(outside)
    for action in ("prune", "purge"):
        run = pipfresh("cache", action)
        assert run.code == 2, run
        (line,) = run.stderr.splitlines()
        assert line.startswith("pipfresh: error: refusing to"), line
    assert _tree_state(outside) == before
