"""The fast install path: pip resolves, the store installs.

pip decides what to install (``pip install --dry-run --report`` with the
user's own arguments, fresh index pages as always), and what its dry run
downloads is kept (``kept``: an index that sends no caching headers leaves
nothing in pip's cache); wheels missing from the partition's store are taken
from there or obtained through pip (``pip wheel``, so the managed cache,
authentication, proxies, certificates and hashes keep working) and added; replaced versions are uninstalled by pip; then every wheel is linked
from the store in parallel by ``install``.

Anything outside the supported set goes to plain pip, and the summary says
why. It is the default; ``PIPFRESH_INSTALLER=pip`` always runs plain pip.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import (
    canonicalize_name,
)
from packaging.version import Version

from pipfresh.cache import share
from pipfresh.cli.progress import Progress
from pipfresh.cli.summary import Summary
from pipfresh.console import Console
from pipfresh.layout import STORE_LAYOUT, Partition
from pipfresh.phases import Phases
from pipfresh.pip import invoke, output, report
from pipfresh.pip.config import PipConfig
from pipfresh.pip.report import Item
from pipfresh.resolve import dryrun, hashpins, kept, revalidate
from pipfresh.resolve.buildkey import BuildOptions
from pipfresh.store import install, localbuild, obtain, pipsteps, wheelcheck
from pipfresh.store.decision import Decision, decide, unsupported_option
from pipfresh.store.entries import Compiler, Entry, Store, stored
from pipfresh.store.sharing import SiblingFiles
from pipfresh.target.interpreter import Target

if TYPE_CHECKING:
    from pipfresh.store.adding import Adding

# The first pip taking --config-settings on a requirement line (obtain builds that way).
_PER_REQUIREMENT_SETTINGS = Version("23.1")

# -- the run -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What the fast path did, for the summary."""

    code: int
    fallback: str | None = None  # why plain pip ran after all
    from_store: int = 0
    added: int = 0
    resolution: str = ""  # how pip's report was obtained
    revalidated: int = 0  # index pages pipfresh itself found unchanged
    reverified: int = 0  # store entries hashed again: their files were not as last recorded
    store_keys: list[str] = field(default_factory=list)  # the store entries installed
    had: list[str] = field(default_factory=list)  # sha256 of the items the store held already
    installed: list[Item] = field(default_factory=list)  # what the store installed


@dataclass(frozen=True)
class Job:
    """One install through the store: where, with which pip, the user's arguments."""

    partition: Partition
    target: Target
    program: invoke.PipProgram
    pip_args: list[str]
    env: Mapping[str, str]
    report_path: Path
    console: Console  # what the install says, and pip's output it relays
    progress: Progress = field(default_factory=Progress.silent)  # long phases, on stderr
    config: PipConfig | None = None  # pip's configuration, read once (``run`` reads it else)
    phases: Phases = field(default_factory=Phases)  # where the time went, for the summary

    @property
    def quiet(self) -> bool:
        return self.console.quiet

    @property
    def pip(self) -> invoke.PipInvocation:
        """The user's pip command: this pip, this environment, the user's arguments."""
        return invoke.PipInvocation(self.program, self.env, tuple(self.pip_args), self.console)

    @cached_property
    def pins(self) -> hashpins.Pins:
        """The user's ``--hash`` pins (and whether pip checks hashes), read once."""
        return hashpins.read(self.pip_args, self.env, self.target.facts, self.config)


def install_with_store(job: Job, summary: Summary) -> Outcome:
    """``run``, with the summary told how pip resolved, which installer ran and why."""
    outcome = run(job)
    summary.resolution = outcome.resolution
    summary.index_revalidated += outcome.revalidated
    if outcome.fallback is not None:
        summary.installer = "pip"
        summary.installer_reason = outcome.fallback
    elif outcome.code == 0:
        summary.store_reverified = outcome.reverified
        again = f" ({outcome.reverified} re-verified by hash)" if outcome.reverified else ""
        summary.installer_reason = (
            f"{outcome.from_store} from the store{again}, {outcome.added} added"
        )
    return outcome


def run(job: Job) -> Outcome:
    """Resolve with pip (or reuse its last resolution), install from the store.

    Falls back to plain pip when the report holds something the store cannot install.
    """
    if job.program.version < _PER_REQUIREMENT_SETTINGS:
        prefix = job.target.facts.prefix
        if BuildOptions.of(job.pip_args, job.env, prefix).config_settings:
            code = _plain_pip(job, label="pip install")
            old = f"-C needs pip >= {_PER_REQUIREMENT_SETTINGS} to build for the store"
            return Outcome(code, fallback=old)
    if job.config is None:
        job = replace(job, config=PipConfig.load(job.pip_args, job.env, job.target.facts.prefix))
    with kept.Capture() as capture:
        return _build_then_run(job, capture)


def _build_then_run(job: Job, capture: kept.Capture) -> Outcome:
    """``run`` with the local projects (if any) built first, once."""
    found = _local_projects(job)
    if not found:
        return _run(job, None, capture)
    with tempfile.TemporaryDirectory(prefix="pipfresh-local-") as tmp:
        default = BuildOptions.of(job.pip_args, job.env, job.target.facts.prefix).default
        with job.phases.timed("build"):
            code, builds = localbuild.build(found, job.pip, default, Path(tmp))
        if code != 0:  # pip builds it again, and fails in its own words
            code = _plain_pip(job, label="pip install")
            named = " ".join(job.pip_args[f.position] for f in found)
            return Outcome(code, fallback=f"pip wheel could not build {named}")
        return _run(job, builds, capture)


def _local_projects(job: Job) -> list[localbuild.Local]:
    """The local projects to build first, unless hash-checking mode is on (pip refuses
    to install a directory then, or an sdist pinned by no --hash: its error)."""
    found = localbuild.find(job.pip_args)
    if found:
        pins = job.pins
        if pins.checking or pins.unknown is not None:
            return []
    return found


def _run(job: Job, builds: localbuild.Builds | None, capture: kept.Capture) -> Outcome:
    """``run`` once the local projects (if any) are built: pip resolves, the store installs."""
    store = Store(job.partition.state_dir / STORE_LAYOUT)
    siblings = SiblingFiles(lambda: share.sibling_stores(job.partition))
    with store.adding(Compiler(job.target.python, job.env), siblings=siblings) as early:
        with job.phases.timed("resolve"):
            ahead = _Ahead(job, early)
            resolution = dryrun.resolve(job, builds, capture, ahead)
        try:
            return _resolved(job, builds, resolution, capture, ahead)
        finally:  # plain pip runs, or the run stops: what is fetched ahead is not waited for
            if resolution.behind is not None:
                resolution.behind.stop()


@dataclass
class _Ahead:
    """The store, taking the wheels fetched while pip resolves: each is unpacked and
    compiled as it arrives (``early``), if it has the sha256 its page gives, and
    published only if pip's report names it (``obtain``); and looking up the entries of
    the report that will probably stand while the pages are revalidated (``expect``)."""

    job: Job
    early: Adding
    looked: _Looked | None = None

    @property
    def store(self) -> Store:
        return self.early.store

    @property
    def http_dir(self) -> Path:
        return self.job.partition.pip_cache / self.job.program.http_dir

    def holds(self, sha256: str) -> bool:
        return self.store.holds(sha256)

    def take(self, url: str, sha256: str) -> None:
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        obtain.submit_cached(url, sha256, filename, self.http_dir, self.early, {})

    def expect(self, data: Mapping[str, Any]) -> None:
        try:
            items, why = report.items_of(data)
        except ValueError:
            return
        if why is None and self.looked is None:
            by_store = [i for i in items if not i.via_pip]
            keys = obtain.store_keys(by_store, self.job.pip_args, self.job.env, self.job.target)
            self.looked = _Looked(self.store, keys.values())

    def stored(self, keys: Iterable[str]) -> dict[str, Entry]:
        """``stored``, of what ``expect`` did not look up already."""
        wanted, looked = set(keys), self.looked
        found = looked.result() if looked is not None else None
        if looked is None or found is None:
            return stored(self.store, wanted)
        rest = stored(self.store, wanted - looked.keys)
        return {**{k: e for k, e in found.items() if k in wanted}, **rest}


class _Looked:
    """``stored`` on a thread of its own: the stat (and, after a restore, the hashing)
    of every stored file while the index answers. Its entries are as good as ones looked
    up later in the run: the partition is locked, and nothing else changes them."""

    def __init__(self, store: Store, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)
        self._found: dict[str, Entry] | None = None
        self._done = threading.Event()
        threading.Thread(target=self._look, args=(store,), daemon=True).start()

    def _look(self, store: Store) -> None:
        try:
            self._found = stored(store, self.keys)
        finally:  # anything it raised: looked up again where it is needed
            self._done.set()

    def result(self) -> dict[str, Entry] | None:
        """The intact entries, once looked up; None when the lookup failed."""
        self._done.wait()
        return self._found


def _resolved(
    job: Job,
    builds: localbuild.Builds | None,
    resolution: dryrun.Resolution,
    capture: kept.Capture,
    ahead: _Ahead,
) -> Outcome:
    """``_run`` once pip resolved (or its last resolution stands)."""
    job = _after(job, resolution)
    how = resolution.how
    if builds is not None and (
        resolution.code != 0 or builds.complete(job.report_path) != 0
    ):  # pip says why in its own words, naming the project rather than its wheel
        code = _plain_pip(job, label="pip install")
        return Outcome(code, fallback="pip's dry run of the built wheel failed", resolution=how)
    if resolution.code != 0:
        return Outcome(resolution.code, resolution=how)
    try:
        items, why = report.items(job.report_path)
        if builds is not None:
            items = builds.items(items)
            builds.restore(job.report_path)
    except (OSError, ValueError) as exc:
        items, why = [], f"cannot read pip's report: {exc}"
    if why is not None:
        code = _plain_pip(job, label="pip install")
        return Outcome(code, fallback=why, resolution=how)
    if not items:
        return Outcome(0, resolution=how, revalidated=resolution.revalidated)
    # pip checks each archive against the user's --hash pins; a dry run that downloaded
    # nothing (or a reused report) checked nothing: what the pins refuse is pip's to refuse.
    why = job.pins.refusal(items)
    if why is not None:
        code = _plain_pip(job)
        return Outcome(code, fallback=why, resolution=how)
    return _from_store(job, items, builds, resolution, capture, ahead)


def _after(job: Job, resolution: dryrun.Resolution) -> Job:
    """The job for the rest of the run: its pips (``pip wheel``, plain pip, pip's own
    install of pip) take index pages from the cache as the dry run did, when the dry run
    trusted it (every page left there was verified in this run, by pipfresh or by pip
    itself), instead of asking for each again."""
    if resolution.pip is None or resolution.pip.env == job.env:
        return job
    return replace(job, env=resolution.pip.env)


def _from_store(
    job: Job,
    items: list[Item],
    builds: localbuild.Builds | None,
    resolution: dryrun.Resolution,
    capture: kept.Capture,
    ahead: _Ahead,
) -> Outcome:
    """Install what pip resolved: the store's wheels (added first when missing), pip and
    setuptools through pip; pip uninstalls the versions they replace."""
    how = resolution.how
    # sha256 -> file pip checked in this run, of what pip's HTTP cache does not hold
    downloaded = capture.matching(items, job.partition.pip_cache / job.program.http_dir)
    if downloaded:
        with job.phases.timed("obtain"):
            _keep(job, downloaded, items, resolution.pages)
    by_store = [i for i in items if not i.via_pip]
    store, early = ahead.store, ahead.early
    # An sdist's wheel is stored under a key of its build options too (obtain.store_keys).
    keys = obtain.store_keys(by_store, job.pip_args, job.env, job.target)
    with job.phases.timed("check"):
        found = ahead.stored(keys.values())
    entries = {sha: found[key] for sha, key in keys.items() if key in found}
    reverified = sum(1 for e in {e.path: e for e in entries.values()}.values() if e.reverified)
    had = sorted(entries)
    missing = [i for i in by_store if i.sha256 not in entries]
    try:  # a wheel pip would reject (or only pip installs as pip does): pip runs, and says so
        if missing:
            http_dir = job.partition.pip_cache / job.program.http_dir
            sources = obtain.Sources(http_dir, downloaded)
            with job.phases.timed("obtain"):
                if resolution.behind is not None:  # the wheels fetched while pip resolved
                    resolution.behind.wait()
                code, added = obtain.obtain(
                    store, missing, job.target, job.pip, sources, job.progress, job.phases, early
                )
            if code != 0:
                return Outcome(code, resolution=how)
            entries.update(added)
        plans = install.plans(entries)
    except wheelcheck.UnsupportedWheel as exc:
        code = _plain_pip(job)
        return Outcome(code, fallback=str(exc), resolution=how)
    for changed in install.changed_in_place(
        job.target.facts, [(i.name, i.version) for i in by_store]
    ):
        job.console.note(changed.note())
    names = {  # as pip's resolver spelled them (a local project: as its metadata does)
        i.name: output.display_name(i.name, _source_url(i.url, builds), resolution.names)
        for i in items
    }
    with job.phases.timed("link"):
        code = _install(job, store, items, _Linking(entries, plans, names))
    if code != 0:
        return Outcome(code, resolution=how)
    return Outcome(
        0,
        from_store=len(by_store) - len(missing),
        added=len(missing),
        resolution=how,
        revalidated=resolution.revalidated,
        reverified=reverified,
        store_keys=sorted(set(keys.values())),
        had=had,
        installed=by_store,
    )


@dataclass(frozen=True)
class _Linking:
    """What the store links, by sha256: each wheel's entry and plan; and each name as
    pip's resolver spelled it."""

    entries: Mapping[str, Entry]
    plans: Mapping[str, install.Plan]
    names: Mapping[str, str]


def _plain_pip(job: Job, label: str = "pip") -> int:
    """The user's command as plain pip runs it (the store cannot install it)."""
    with job.phases.timed("pip"):
        return job.pip.run(label=label)


def _install(job: Job, store: Store, items: list[Item], linking: _Linking) -> int:
    """pip uninstalls what is replaced, the store links its wheels, pip installs pip and
    setuptools; pip's lines about it all are printed as pip prints them."""
    by_store = [i for i in items if not i.via_pip]
    lines = None if job.quiet else _lines(job, linking.names)
    if lines is not None:
        job.console.line(lines.installing())
    uninstalls = output.Uninstalls()
    code = pipsteps.uninstall_replaced(job, by_store, lines, uninstalls)
    if code != 0:
        return code
    with store.linking({e.path: e for e in linking.entries.values()}.values()):
        _install_all(job, by_store, linking)  # os.link changes their ctime
    by_pip = [i for i in items if i.via_pip]
    code = pipsteps.install_with_pip(job, by_pip, uninstalls)
    if code != 0:
        return code
    for item in by_pip:
        if not item.requested:  # pip was asked for it by name: a dependency all the same
            install.unrequest(job.target.facts, item.name, item.version)
    if lines is not None:
        for line in [*uninstalls.lines(lines), *lines.after_uninstalls(), lines.installed()]:
            job.console.line(line)
    return 0


def _source_url(url: str, builds: localbuild.Builds | None) -> str:
    """Where pip would have installed ``url`` from: a built wheel's local project."""
    built = builds.of_url(url) if builds is not None else None
    return url if built is None else built.local.url


def _lines(job: Job, names: Mapping[str, str]) -> output.Lines | None:
    """What pip prints about this install (None when pip's report cannot be read again)."""
    try:
        report = json.loads(job.report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    spelled = {str(canonicalize_name(k)): v for k, v in names.items()}
    facts, version = job.target.facts, job.program.version
    return output.Lines.of(report, spelled, facts, job.pip_args, job.env, version, job.config)


def _keep(job: Job, downloaded: Mapping[str, Path], items: list[Item], pages: list[str]) -> None:
    """What the dry run downloaded, into pip's HTTP cache where its page vouches for it
    (``kept.into_pip_cache``): neither ``pip wheel`` nor a later dry run downloads it."""
    readers: list[revalidate.Revalidator] = []

    def fetch(url: str) -> bytes | None:
        if "****" in url or "@" in urllib.parse.urlsplit(url).netloc:
            return None  # pip redacts credentials in its log: never send a guess
        if not readers:
            try:
                readers.append(revalidate.Revalidator(job.pip_args, job.env))
            except (OSError, ValueError):  # a certificate that does not load
                return None
        return readers[0].read(url)

    http_dir = job.partition.pip_cache / job.program.http_dir
    kept.into_pip_cache(downloaded, items, http_dir, pages, fetch)


def _install_all(job: Job, items: list[Item], linking: _Linking) -> None:
    scheme = install.TargetScheme.for_venv(job.target.facts)
    template = install.script_template(job.program.version)
    interpreter = str(job.target.python)
    requests = [
        install.Request(
            linking.entries[i.sha256],
            linking.names[i.name],
            i.requested,
            i.direct_url,
            linking.plans[i.sha256],
        )
        for i in items
    ]
    if not requests:
        return
    sample = requests[0].entry  # decides how files are placed: probed once per filesystem
    where = (scheme.purelib, scheme.platlib, scheme.scripts, scheme.data)
    linker = install.linker_from_env(job.env, sample.file(next(iter(sample.files))), where)
    if linker.note:
        job.console.note(f"note: {linker.note}")

    def one(request: install.Request) -> None:
        install.install(request, scheme, interpreter, template, linker)

    workers = min(len(requests), 2 * (os.cpu_count() or 1), 16)
    phase = job.progress.phase("installing", len(requests), "wheel")
    with phase as installing, ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for _ in pool.map(one, requests):
            installing.advance()


__all__ = [
    "Decision",
    "Job",
    "Outcome",
    "decide",
    "install_with_store",
    "run",
    "unsupported_option",
]
