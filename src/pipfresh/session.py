"""One pipfresh run of a pip command: target, partition, checks, pip, account.

The order matters: the partition is locked *shared* for the whole run (other
installs may share it; a prune may not), broken entries are dropped before pip
can meet them, and the cache is snapshotted around pip so the summary can say
what the run reused, fetched and built.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from pipfresh.cache import health, lock, repair, share, snapshot, usage
from pipfresh.cli.progress import Progress
from pipfresh.cli.summary import Summary, account
from pipfresh.errors import CacheNotWritable, CacheRootError, Interrupted, LockTimeout
from pipfresh.layout import CacheRoot, Partition, default_root, partition_id
from pipfresh.pip import httpcache, invoke, process, report
from pipfresh.pip.args import split
from pipfresh.pip.config import PipConfig
from pipfresh.store import fastpath
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


def run_pip_command(command: str, argv: list[str], environ: Mapping[str, str]) -> int:
    """``pipfresh COMMAND ARGS``: pip's COMMAND with the managed cache; pip's status back.

    Ctrl-C stops the run once, wherever it is (``process``): one line says where,
    the lock is released, the summary JSON still written, and pip's status returned.
    """
    with process.handling_interrupts("starting"):
        try:
            return _run_pip_command(command, argv, environ)
        except Interrupted as stop:
            print(f"pipfresh: interrupted ({stop.phase})", file=sys.stderr)
            return stop.status


def _run_pip_command(command: str, argv: list[str], environ: Mapping[str, str]) -> int:
    started = time.monotonic()
    parsed = split(argv)
    note = _Note(quiet=parsed.quiet > 0)
    user_choice = parsed.user_cache_choice
    root: CacheRoot | None = None
    unusable: str | None = None  # why the managed cache cannot be used, if it cannot
    if command in NO_CACHE_COMMANDS:
        try:
            root = open_root(environ)
        except CacheRootError:
            root = None  # only the probe cache is lost
    elif user_choice is None:
        try:
            root = open_root(environ)
        except CacheNotWritable as exc:
            unusable = str(exc)
    else:
        note(f"{user_choice} given: pip runs without pipfresh's managed cache")
        try:
            root = open_root(environ)
        except CacheRootError:
            root = None  # only the probe cache is lost
    target = resolve_target(parsed.python, environ, root)
    program = invoke.select(target)
    invoke.require_command(program, command)
    partition = None
    if user_choice is None:
        if root is not None:
            partition, unusable = _usable_partition(root, partition_id(target.facts), note)
        for text in invoke.user_env_notes(environ):
            note(text)
    env = invoke.environment(environ, program, partition.pip_cache if partition else None)
    if unusable is not None:
        # pip would disable the cache itself, with a warning that scrolls by: say it once.
        print(f"pipfresh: warning: {unusable}; pip runs without a cache", file=sys.stderr)
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
    # Only an install that installs counts as a run for `cache prune --mode recent`.
    installs = command == "install" and not helped and not summary.dry_run
    try:
        with tempfile.TemporaryDirectory(prefix="pipfresh-") as scratch:
            pip_args = [command, *parsed.args]
            report_path: Path | None = None
            if command == "install":
                if parsed.report is None:
                    report_path = Path(scratch, "report.json")
                    pip_args += ["--report", str(report_path)]
                elif parsed.report != "-":
                    report_path = Path(parsed.report)
            if partition is None:
                code = invoke.run(program.command(pip_args), env, f"pip {command}")
            else:
                code = _run_in_partition(
                    partition, target, program, pip_args, env, summary, report_path, note,
                    installs,
                )  # fmt: skip
    except Interrupted as stop:
        summary.exit_code, summary.interrupted = stop.status, stop.phase
        summary.elapsed = time.monotonic() - started
        if command == "install" and not helped and parsed.summary_json:
            summary.write_json(parsed.summary_json)
        raise
    summary.exit_code = code
    summary.elapsed = time.monotonic() - started
    if command == "install" and not helped:
        if parsed.quiet == 0:
            print(summary.line(), file=sys.stderr)
        if parsed.summary_json:
            summary.write_json(parsed.summary_json)
    return code


def _usable_partition(
    root: CacheRoot, pid: str, note: _Note
) -> tuple[Partition | None, str | None]:
    """The partition, repaired if another user's restore left it unusable; else why not."""
    partition = root.partition(pid)
    try:
        repaired = repair.make_usable(partition)
        partition.ensure()
    except CacheNotWritable as exc:
        return None, str(exc)
    if repaired:
        note(repaired)
    return partition, None


def _run_in_partition(
    partition: Partition,
    target: Target,
    program: invoke.PipProgram,
    pip_args: list[str],
    env: Mapping[str, str],
    summary: Summary,
    report_path: Path | None,
    note: _Note,
    installs: bool,
) -> int:
    def waiting() -> None:
        print(
            f"pipfresh: waiting for another pipfresh to finish with {partition.id}...",
            file=sys.stderr,
        )

    with process.phase("checking the cache"):
        try:  # alone, an interrupted or disk-full run's temporary files are dead weight
            with lock.hold(partition.lock_file, shared=False, timeout=0):
                repair.remove_leftovers(partition)
        except LockTimeout:
            pass  # other runs are writing: their temporary files are not leftovers
    held = lock.hold(partition.lock_file, shared=True, on_wait=waiting)
    with held as lock_fd, process.children_inherit(lock_fd):
        with process.phase("checking the cache"):
            dropped = health.drop_broken(partition, program.http_dir)
            summary.dropped = len(dropped)
            share.seed_from_siblings(partition, program.http_dir)
            before = snapshot.take(partition.pip_cache)
        stored: list[str] = []  # store entries the run used, by key
        if summary.installer == "store" and report_path is not None:
            shown = Progress.for_run(note.quiet, pip_args, env, prefix=target.facts.prefix)
            job = fastpath.Job(
                partition, target, program, pip_args, env, report_path, note.quiet, shown
            )
            with process.phase("installing from the store"):
                outcome = fastpath.install_with_store(job, summary)
            code, stored = outcome.code, outcome.store_keys
        else:
            code = invoke.run(program.command(pip_args), env, f"pip {pip_args[0]}")
        with process.phase("recording the run"):
            _account(
                partition, target, program, summary, report_path, before, stored, code, installs
            )
    return code


def _account(
    partition: Partition,
    target: Target,
    program: invoke.PipProgram,
    summary: Summary,
    report_path: Path | None,
    before: snapshot.Snapshot,
    stored: list[str],
    code: int,
    installs: bool,
) -> None:
    """The summary's figures, shared duplicates, and (an install that installed) its usage."""
    after = snapshot.take(partition.pip_cache)
    items: list[report.Installed] = []
    if code == 0 and report_path is not None and report_path.exists():
        try:
            items = report.load(report_path)
        except report.ReportError as exc:
            summary.notes.append(str(exc))
    account(summary, items, partition.pip_cache, program.http_dir, before, after, _read)
    touched = [
        rel
        for rel in snapshot.changed(before, after)
        if rel.startswith("http-v2/") and rel.endswith(".body")
    ]
    share.link_duplicates(partition, touched)
    try:
        partition.record_use(target.facts, str(program.version))
    except OSError:
        pass
    # What this run used, for `cache prune --mode recent|size`: only an install that
    # installed something counts. `--help`, a failed install, a dry run or a no-op
    # (all satisfied) used nothing a later run needs, and counting them as runs would
    # push the last real install's entries out of `--keep-runs`.
    if not (installs and code == 0 and items):
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


class _Note:
    """One-line notes on stderr, silenced by ``-q``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"pipfresh: {text}", file=sys.stderr)
