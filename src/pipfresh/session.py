"""One pipfresh run of a pip command: target, partition, checks, pip, account.

The order matters: the partition is locked *shared* for the whole run (other
installs may share it; a prune may not), broken entries are dropped before pip
can meet them, and the cache is snapshotted around pip so the summary can say
what the run reused, fetched and built.

A run prints nothing itself: it says what happens while it happens through the
``Console`` the CLI passes in, and returns a ``RunResult`` the CLI renders.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipfresh.cache import health, lock, repair, share, snapshot, usage
from pipfresh.cache.scan import PartitionScan
from pipfresh.cli.summary import Summary, account
from pipfresh.console import Console
from pipfresh.errors import CacheNotWritable, CacheRootError, Interrupted, LockTimeout
from pipfresh.layout import CacheRoot, Partition, default_root, partition_id
from pipfresh.phases import Phases
from pipfresh.pip import httpcache, invoke, process, report
from pipfresh.pip.args import PipArgs, split
from pipfresh.pip.config import PipConfig
from pipfresh.store import fastpath
from pipfresh.store.bodies import InstalledBodies
from pipfresh.target import interpreter
from pipfresh.target.interpreter import Target


def resolve_target(
    python: str | None, environ: Mapping[str, str], root: CacheRoot | None
) -> Target:
    """Locate and probe the target; the probe is cached under the root when there is one."""
    path, source = interpreter.locate(python, environ)
    facts = interpreter.probe(path, root.probes if root else None)
    return Target(path, source, facts)


# pip commands that read no cache: they run even when the cache root is unusable.
NO_CACHE_COMMANDS = frozenset(
    ("list", "show", "freeze", "check", "inspect", "uninstall", "help", "config", "debug",
     "completion", "hash")
)  # fmt: skip


def open_root(environ: Mapping[str, str]) -> CacheRoot:
    return CacheRoot(default_root(environ)).ensure()


@dataclass
class RunResult:
    """What one run hands back to the CLI, which prints it (``cli.render.finish``)."""

    status: int  # pip's exit status, or the interrupted run's
    summary: Summary | None = None  # an install's (not ``--help``'s): its line and JSON
    interrupted: str | None = None  # the phase Ctrl-C stopped the run in
    notes: list[str] = field(default_factory=list)  # said after the run, before its line


def run_pip_command(
    command: str, argv: list[str], environ: Mapping[str, str], console: Console
) -> RunResult:
    """``pipfresh COMMAND ARGS``: pip's COMMAND with the managed cache; pip's status back.

    Ctrl-C stops the run once, wherever it is (``process``): the lock is released and
    the result says where it stopped, so the CLI can still write the summary JSON.
    """
    with process.handling_interrupts("starting"):
        try:
            return _run_pip_command(command, argv, environ, console)
        except Interrupted as stop:
            return RunResult(stop.status, interrupted=stop.phase)


def _run_pip_command(
    command: str, argv: list[str], environ: Mapping[str, str], console: Console
) -> RunResult:
    started = time.monotonic()
    parsed = split(argv)
    note = console.note
    user_choice = parsed.user_cache_choice
    root, unusable = _open_root(command, user_choice, environ, note)
    target = resolve_target(parsed.python, environ, root)
    program = invoke.select(target)
    invoke.require_command(program, command)
    partition, scan = None, None
    if user_choice is None:
        if root is not None:
            partition, unusable, scan = _usable_partition(root, partition_id(target.facts), note)
        for text in invoke.user_env_notes(environ):
            note(text)
    env = invoke.environment(environ, program, partition.pip_cache if partition else None)
    if unusable is not None:
        # pip would disable the cache itself, with a warning that scrolls by: say it once.
        console.warning(f"{unusable}; pip runs without a cache")
        env.pop("PIP_CACHE_DIR", None)
        env["PIP_NO_CACHE_DIR"] = "1"

    summary = Summary(
        command=command,
        partition=partition.id if partition else None,
        cache="managed" if partition else "unusable" if unusable else str(user_choice),
        python=str(target.python),
        python_source=target.source,
        pip=program.description,
    )
    config = PipConfig.load(parsed.args, env, target.facts.prefix)  # read once per run
    decision = fastpath.decide(command, parsed, target, partition, environ, config)
    summary.installer, summary.installer_reason = decision.installer, decision.reason
    helped = bool({"-h", "--help"} & set(parsed.args))
    summary.dry_run = "--dry-run" in parsed.args
    shown = summary if command == "install" and not helped else None
    # Only an install that installs counts as a run for `cache prune --mode recent`.
    installs = shown is not None and not summary.dry_run
    phases = Phases()  # the target found, the partition repaired: the run's start
    phases.add("start", time.monotonic() - started)
    try:
        with tempfile.TemporaryDirectory(prefix="pipfresh-") as scratch:
            pip_args, report_path = _pip_args(command, parsed, Path(scratch))
            if partition is None or scan is None:
                pip = invoke.PipInvocation(program, env, tuple(pip_args), console)
                with phases.timed("pip"):
                    code = pip.run(label=f"pip {command}")
            else:
                run = _InPartition(
                    partition, scan, target, program, pip_args, env, report_path, console,
                    config, installs, phases,
                )  # fmt: skip
                code = _run_in_partition(run, summary)
    except Interrupted as stop:
        summary.exit_code, summary.interrupted = stop.status, stop.phase
        summary.elapsed, summary.phases = time.monotonic() - started, phases.seconds()
        return RunResult(stop.status, shown, interrupted=stop.phase)
    summary.exit_code = code
    summary.elapsed, summary.phases = time.monotonic() - started, phases.seconds()
    return RunResult(code, shown)


def _open_root(
    command: str, user_choice: str | None, environ: Mapping[str, str], note: Callable[[str], None]
) -> tuple[CacheRoot | None, str | None]:
    """The cache root, and why the managed cache cannot be used if it cannot."""
    if command not in NO_CACHE_COMMANDS and user_choice is None:
        try:
            return open_root(environ), None
        except CacheNotWritable as exc:
            return None, str(exc)
    if command not in NO_CACHE_COMMANDS:
        note(f"{user_choice} given: pip runs without pipfresh's managed cache")
    try:
        return open_root(environ), None
    except CacheRootError:
        return None, None  # only the probe cache is lost


def _pip_args(command: str, parsed: PipArgs, scratch: Path) -> tuple[list[str], Path | None]:
    """pip's arguments, with ``--report`` added to an install so the run can be accounted;
    and where that report will be, if anywhere."""
    pip_args = [command, *parsed.args]
    if command != "install" or parsed.report == "-":
        return pip_args, None
    if parsed.report is not None:
        return pip_args, Path(parsed.report)
    report_path = scratch / "report.json"
    return [*pip_args, "--report", str(report_path)], report_path


def _usable_partition(
    root: CacheRoot, pid: str, note: Callable[[str], None]
) -> tuple[Partition | None, str | None, PartitionScan | None]:
    """The partition, repaired if another user's restore left it unusable, and its one
    scan before pip; else why not."""
    partition = root.partition(pid)
    scan = PartitionScan(partition)
    try:
        repaired = repair.make_usable(partition, scan)
        partition.ensure()
    except CacheNotWritable as exc:
        return None, str(exc), None
    if repaired:
        note(repaired)
    return partition, None, scan


@dataclass(frozen=True)
class _InPartition:
    """A pip command run in a managed partition: what each of its steps reads."""

    partition: Partition
    scan: PartitionScan  # the partition's one walk before pip
    target: Target
    program: invoke.PipProgram
    pip_args: list[str]
    env: Mapping[str, str]
    report_path: Path | None
    console: Console
    config: PipConfig  # pip's configuration, read once for the whole run
    installs: bool  # an install that installs: a run ``cache prune --mode recent`` counts
    phases: Phases  # where the run's time goes, for the summary

    def job(self, report_path: Path) -> fastpath.Job:
        """The store's install of this command."""
        progress = self.console.progress(
            self.pip_args, self.env, self.target.facts.prefix, self.config
        )
        return fastpath.Job(
            self.partition, self.target, self.program, self.pip_args, self.env, report_path,
            self.console, progress, self.config, self.phases,
        )  # fmt: skip


def _run_in_partition(run: _InPartition, summary: Summary) -> int:
    partition, scan, program = run.partition, run.scan, run.program

    def waiting() -> None:
        run.console.waiting(partition.id)

    timed = run.phases.timed
    with process.phase("checking the cache"), timed("cache"):
        try:  # alone, an interrupted or disk-full run's temporary files are dead weight
            with lock.hold(partition.lock_file, shared=False, timeout=0):
                repair.remove_leftovers(partition, scan)
        except LockTimeout:
            pass  # other runs are writing: their temporary files are not leftovers
    held = lock.hold(partition.lock_file, shared=True, on_wait=waiting)
    with held as lock_fd, process.children_inherit(lock_fd):
        with process.phase("checking the cache"), timed("cache"):
            dropped = health.drop_broken(partition, program.http_dir, scan)
            summary.dropped = len(dropped)
            share.seed_from_siblings(partition, program.http_dir, scan)
            before = scan.snapshot()
        stored: list[str] = []  # store entries the run used, by key
        had: list[str] = []  # the items' sha256 the store held before the run
        by_store: list[report.Item] = []  # the wheels the store installed
        if summary.installer == "store" and run.report_path is not None:
            with process.phase("installing from the store"):
                outcome = fastpath.install_with_store(run.job(run.report_path), summary)
            code, stored, had = outcome.code, outcome.store_keys, outcome.had
            by_store = outcome.installed
        else:
            pip = invoke.PipInvocation(program, run.env, tuple(run.pip_args), run.console)
            with timed("pip"):
                code = pip.run(label=f"pip {run.pip_args[0]}")
        with process.phase("recording the run"), timed("record"):
            _account(run, summary, before, stored, had, code)
    if code == 0 and by_store:
        with process.phase("recording the run"), timed("record"):
            _drop_bodies(run, summary, by_store)
    return code


def _drop_bodies(run: _InPartition, summary: Summary, by_store: list[report.Item]) -> None:
    """One form of each wheel, the store's (``bodies``): alone on the partition, since a
    run that holds it too might be reading a body; then the next run, or a prune, does it."""
    partition, program = run.partition, run.program
    try:
        with lock.hold(partition.lock_file, shared=False, timeout=0):
            bodies = InstalledBodies(partition.pip_cache / program.http_dir, program.version)
            summary.store_bodies_dropped = bodies.drop(by_store)
    except (LockTimeout, OSError):
        pass


def _account(
    run: _InPartition,
    summary: Summary,
    before: snapshot.Snapshot,
    stored: list[str],
    had: list[str],
    code: int,
) -> None:
    """The summary's figures, shared duplicates, and (an install that installed) its usage."""
    partition, program, report_path = run.partition, run.program, run.report_path
    after = snapshot.take(partition.pip_cache)
    items: list[report.Installed] = []
    if code == 0 and report_path is not None and report_path.exists():
        try:
            items = report.load(report_path)
        except report.ReportError as exc:
            summary.notes.append(str(exc))
    account(summary, items, partition.pip_cache, program.http_dir, before, after, _read, set(had))
    touched = [
        rel
        for rel in snapshot.changed(before, after)
        if rel.startswith("http-v2/") and rel.endswith(".body")
    ]
    share.link_duplicates(partition, touched)
    try:
        partition.record_use(run.target.facts, str(program.version), summary.installer)
    except OSError:
        pass
    # What this run used, for `cache prune --mode recent|size`: only an install that
    # installed something counts. `--help`, a failed install, a dry run or a no-op
    # (all satisfied) used nothing a later run needs, and counting them as runs would
    # push the last real install's entries out of `--keep-runs`.
    if not (run.installs and code == 0 and items):
        return
    try:
        used = usage.used_by_run(partition.pip_cache, program.http_dir, items, before, after)
        used |= {usage.store_rel(key) for key in stored}
        if used:
            usage.record(partition, used)
    except (OSError, LockTimeout):
        pass


def _read(meta: Path) -> httpcache.CachedResponse | None:
    entry = httpcache.entry_files_for(meta)
    response, _problem = httpcache.check_entry(entry)
    return response
