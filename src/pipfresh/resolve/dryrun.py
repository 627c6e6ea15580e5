"""pip's dry run: resolving with ``--report``, or reusing the last resolution, and
reading pip's log of it.

The report pip writes is the run's plan; its log gives the index pages it read
(``reuse`` records them, to reuse the resolution while they are unchanged) and the
names as pip spells them (``output``). What the dry run downloads is kept
(``kept.Capture``), and a kept file pip found replaced makes it resolve again.

    resolution = dryrun.resolve(job, builds, capture)   # job: fastpath.Job
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from pipfresh.console import Console
from pipfresh.layout import Partition
from pipfresh.phases import Phases
from pipfresh.pip import invoke, options, output, report
from pipfresh.pip.args import option_values
from pipfresh.pip.config import ConfigError, PipConfig
from pipfresh.resolve import candidates, kept, pagelog, prefetch, reuse, revalidate
from pipfresh.target.interpreter import Target

if TYPE_CHECKING:
    from pipfresh.store.localbuild import Builds


class Run(Protocol):
    """What a dry run needs of the install (``fastpath.Job``)."""

    @property
    def partition(self) -> Partition: ...
    @property
    def target(self) -> Target: ...
    @property
    def program(self) -> invoke.PipProgram: ...
    @property
    def pip_args(self) -> list[str]: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def report_path(self) -> Path: ...
    @property
    def quiet(self) -> bool: ...
    @property
    def console(self) -> Console: ...
    @property
    def config(self) -> PipConfig | None: ...
    @property
    def pip(self) -> invoke.PipInvocation: ...
    @property
    def phases(self) -> Phases: ...


class Ahead(Protocol):
    """Where the wheels fetched while pip resolves go (the store, which starts adding
    them at once); none it already holds is fetched."""

    def holds(self, sha256: str) -> bool: ...
    def take(self, url: str, sha256: str) -> None: ...

    def expect(self, report: Mapping[str, Any]) -> None:
        """The recorded report that stands if the pages are unchanged: its wheels are
        looked up in the store while they are revalidated."""


@dataclass(frozen=True)
class Resolution:
    """How pip's report came to be, for the summary and what follows."""

    code: int
    how: str  # for the summary: "pip (...)" or "reused: ..."
    revalidated: int = 0
    names: Mapping[str, str] = field(default_factory=dict)  # as pip spelled them (canonical ->)
    pages: list[str] = field(default_factory=list)  # the index pages pip's dry run read
    behind: revalidate.Behind | None = None  # wheels fetched ahead while pip resolved
    # The pip the dry run ran: one trusting the cache (``Revalidator.pip_for``) left there
    # only pages verified in this run, so the run's later pips may trust it too.
    pip: invoke.PipInvocation | None = None


def resolve(
    job: Run, builds: Builds | None, capture: kept.Capture, ahead: Ahead | None = None
) -> Resolution:
    """pip's report at ``job.report_path``: the last one if every page it read is
    unchanged, else from pip's dry run (with what to record for next time).

    With local projects built, the dry run resolves their wheels instead (never reused:
    pip builds a local project on every run)."""
    if builds is not None:
        with tempfile.TemporaryFile() as errors:  # shown unless plain pip runs instead
            how = "pip (a local project, built this run: not reusable)"
            resolution = _dry_run_alone(job, how, capture, builds, errors)
            if resolution.code == 0:
                errors.seek(0)
                job.console.relay(errors.read(), err=True)
        return resolution
    inputs = reuse.inputs(job.pip_args, job.env, job.target, job.program)
    if inputs.digest is None:
        return _dry_run_alone(job, f"pip ({inputs.reason}: not reusable)", capture)
    recorded = reuse.load(job.partition, inputs.digest)
    changed, pip, behind = "", job.pip, None
    if recorded is not None:
        http_dir = job.partition.pip_cache / job.program.http_dir
        revalidator = revalidate.Revalidator(job.pip_args, job.env, http_dir)
        if ahead is not None:
            ahead.expect(recorded.report)
        reused = _reuse(job, inputs.digest, recorded, revalidator)
        if isinstance(reused, Resolution):
            return reused
        changed, pip = f"{reused}; ", revalidator.pip_for(job.pip)
    else:
        pip, behind = _prefetched(job, ahead)
    theirs = pagelog.user_log(job.pip_args, job.env, job.target.facts.prefix, job.config)
    with tempfile.TemporaryDirectory(prefix="pipfresh-log-") as tmp:
        log = theirs or Path(tmp, "pip.log")
        code, text = _dry_run_keeping(job, capture, job.pip_args, log, theirs is None, pip=pip)
        fetched = pagelog.fetched_pages(text)
        names = output.spellings(text) if code == 0 else {}
        if code != 0:
            how = f"pip ({changed.rstrip('; ') or 'failed'})"
            return Resolution(code, how, pages=fetched, behind=behind, pip=pip)
        if theirs is not None:  # what pip read is in their log, among other runs'
            how = f"pip ({changed}a --log of yours: not recorded)"
            return Resolution(0, how, names=names, pages=fetched, behind=behind, pip=pip)
        http_dir = job.partition.pip_cache / job.program.http_dir
        pages, why = pagelog.pages_from_log(log, http_dir)
    how = f"pip ({changed}{why or _record(job, inputs.digest, pages, names)})"
    return Resolution(0, how, names=names, pages=fetched, behind=behind, pip=pip)


def _reuse(
    job: Run, digest: str, recorded: reuse.Recorded, revalidator: revalidate.Revalidator
) -> Resolution | str:
    """The recorded report, when every page it read is unchanged or changed outside the
    root pins (``candidates``); else what changed, for the summary. A page changed
    outside the pins is recorded as it is now, so the next run finds it unchanged."""
    pages = recorded.pages
    changes = revalidator.check(pages)
    why, outside = recorded.survives(changes)
    if why is not None:
        return why
    job.report_path.write_text(json.dumps(recorded.report), encoding="utf-8")
    unchanged = len(pages) - len(changes)
    how = f"reused: {unchanged} index pages unchanged"
    if changes:
        how += f", {len(changes)} changed outside the pins ({', '.join(outside)})"
        _rerecord(job, digest, recorded, changes)
    # A page the round wrote into pip's cache is counted from there, as pip's own would be.
    uncounted = len({p.url for p in pages} - revalidator.fresh)
    return Resolution(0, how, uncounted, recorded.names)


def _rerecord(
    job: Run, digest: str, recorded: reuse.Recorded, changes: Sequence[revalidate.Change]
) -> None:
    """Record the changed pages' new validators and offers (same within the pins)."""
    now = {c.page.url: c for c in changes}
    pages, offers = [], dict(recorded.offers)
    for page in recorded.pages:
        change = now.get(page.url)
        if (
            change is not None
            and change.now is not None
            and (change.now.etag or change.now.last_modified)
        ):
            pages.append(change.now)
            pin = offers[page.url].pin or ""
            offers[page.url] = reuse.Offer.of(
                page.url, change.body, change.content_type, {offers[page.url].project: pin}
            )
        else:
            pages.append(page)
    try:
        reuse.save(job.partition, digest, pages, recorded.report, recorded.names, offers)
    except (OSError, ValueError):
        pass  # next run revalidates the old validators, and judges the page again


def _dry_run_alone(
    job: Run,
    how: str,
    capture: kept.Capture,
    builds: Builds | None = None,
    errors: BinaryIO | None = None,
) -> Resolution:
    """pip's dry run, nothing recorded; logged to read the names pip spells (into the
    user's own log when there is one: pip writes one log, appending). With ``builds``,
    of their wheels in the local projects' places (``errors``: where its stderr goes)."""
    own = pagelog.user_log(job.pip_args, job.env, job.target.facts.prefix, job.config)
    args = job.pip_args if builds is None else builds.arguments(job.pip_args)
    hidden = None if builds is None else builds.hidden
    with tempfile.TemporaryDirectory(prefix="pipfresh-log-") as tmp:
        log = own or Path(tmp, "pip.log")
        code, text = _dry_run_keeping(job, capture, args, log, own is None, hidden, errors)
    names = output.spellings(text) if code == 0 else {}
    return Resolution(code, how, names=names, pages=pagelog.fetched_pages(text))


def _dry_run_keeping(
    job: Run,
    capture: kept.Capture,
    args: Sequence[str],
    log: Path,
    add_log: bool,
    hidden: Callable[[bytes], bool] | None = None,
    errors: BinaryIO | None = None,
    pip: invoke.PipInvocation | None = None,
) -> tuple[int, str]:
    """pip's dry run of ``args``, keeping what it downloads (``kept``), and what it logged
    to ``log`` in this run (``add_log``: ours, else the user's own). A kept file pip found
    replaced under its URL (its page lists another hash) is dropped, and pip resolves once
    more: as plain pip would, it then downloads the new one. ``pip``: the pip to run
    (default ``job.pip``; ``Revalidator.pip_for`` after a revalidation round)."""
    argv = [*args, "--dry-run", *(["--log", str(log)] if add_log else [])]
    pip = capture.hooked((pip or job.pip).with_args(argv))
    start = _size(log)
    code = _dry_run(pip, hidden, errors)
    text = _read_log(log, start)
    if code == 0:
        return code, text
    http_dir = job.partition.pip_cache / job.program.http_dir
    dropped = kept.drop_replaced(http_dir, text)
    if not dropped:
        return code, text
    job.console.note(
        f"note: {len(dropped)} kept download(s) no longer match their index "
        "page (replaced under the same URL): dropped, resolving again"
    )
    start = _size(log)  # pip appends to its log
    code = _dry_run(pip, hidden, errors)
    return code, _read_log(log, start)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_log(path: Path, start: int) -> str:
    """What pip logged from ``start`` on ("" when it cannot be read: names as in metadata)."""
    try:
        with open(path, "rb") as fp:
            fp.seek(start)
            return fp.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _record(job: Run, digest: str, pages: list[pagelog.Page], names: Mapping[str, str]) -> str:
    """Keep this resolution for next time, unless it holds something a page does not pin."""
    try:
        items, why = report.items(job.report_path)
    except (OSError, ValueError) as exc:
        return f"not recorded: {exc}"
    if why is not None:
        return f"not recorded: {why}"
    unpinned = next((i for i in items if i.direct_url or not i.url.startswith("http")), None)
    if unpinned is not None:
        return f"not recorded: {unpinned.name} is a direct reference"
    http_dir = job.partition.pip_cache / job.program.http_dir
    unlisted = pagelog.unattested(items, pages, http_dir)
    if unlisted is not None:
        return f"not recorded: {unlisted.name}'s sha256 is not on its index page"
    try:
        offers = reuse.offers(pages, http_dir, candidates.root_pins(job.pip_args, _settings(job)))
        reuse.save(job.partition, digest, pages, job.report_path, names, offers)
    except (OSError, ValueError) as exc:
        return f"not recorded: {exc}"
    return f"recorded {len(pages)} index pages"


def _prefetched(
    job: Run, ahead: Ahead | None
) -> tuple[invoke.PipInvocation, revalidate.Behind | None]:
    """The pip to resolve with when nothing is recorded for these inputs: on a pip that
    trusts ``max-age``, the pages of the root requirements and of the partition's latest
    resolution fetched at once first, then the pinned roots' ``.metadata`` (``prefetch``),
    which it then reads from its cache, and their wheels fetching while it resolves
    (for ``ahead``, the store, which takes each as it arrives);
    else ``job.pip`` as it is (it asks for every page anyway)."""
    if not invoke.trusts_max_age(job.program):
        return job.pip, None
    with job.phases.timed("prefetch"):
        return _prefetch(job, ahead)


def _prefetch(
    job: Run, ahead: Ahead | None
) -> tuple[invoke.PipInvocation, revalidate.Behind | None]:
    try:
        settings = _config(job).values()
    except ConfigError:
        return job.pip, None  # pip says why itself, before reading any page
    http_dir = job.partition.pip_cache / job.program.http_dir
    latest = reuse.latest(job.partition)
    urls = [p.url for p in latest.pages] if latest is not None else []
    pages = prefetch.root_pages(job.pip_args, settings, http_dir, also=urls)
    if not pages:
        return job.pip, None
    revalidator = revalidate.Revalidator(job.pip_args, job.env, http_dir)
    revalidator.check(pages)  # into pip's cache; what changed is pip's to read
    pins = candidates.root_pins(job.pip_args, settings)
    pinned = [p for p in pages if _project(p) in pins]
    offered = _following(job, revalidator, pages, reuse.offers(pinned, http_dir, pins))
    pip = revalidator.pip_for(job.pip)
    if _builds_from_source(job, settings):
        return pip, None
    if ahead is None:
        return pip, None
    wheels = prefetch.wheel_urls(offered, job.target.facts, http_dir, ahead.holds)

    def arrived(url: str) -> None:
        sha256 = wheels[url]
        if sha256 is not None:
            ahead.take(url, sha256)

    return pip, revalidator.keep_behind(list(wheels), arrived)


_ROUNDS = 8  # of Requires-Dist followed ahead: a deeper tree is pip's to walk


def _following(
    job: Run,
    revalidator: revalidate.Revalidator,
    pages: Sequence[pagelog.Page],
    offered: Mapping[str, reuse.Offer],
) -> dict[str, reuse.Offer]:
    """The pinned roots' ``.metadata``, fetched at once; then, a round at a time, the pages
    of the projects their ``Requires-Dist`` names and the ``.metadata`` of the version
    each is likely to resolve to (``prefetch``); what every page fetched offered."""
    facts, http_dir = job.target.facts, revalidator.http_dir
    assert http_dir is not None
    seen = {offer.project for offer in offered.values()}
    asked = {p.url for p in pages}  # once each in the run
    everything = dict(offered)
    for _round in range(_ROUNDS):
        revalidator.keep_all(prefetch.metadata_urls(offered, facts, http_dir))
        needed = prefetch.requirements_of(offered, facts, http_dir).items()
        wanted = {name: spec for name, spec in needed if name not in seen}
        if not wanted:
            break
        seen |= set(wanted)
        more = prefetch.pages_beside(pages, list(wanted), http_dir)
        revalidator.check([p for p in more if p.url not in asked])
        asked |= {p.url for p in more}
        guesses = prefetch.guessed_pins(reuse.offers(more, http_dir, {}), wanted)
        offered = reuse.offers([p for p in more if _project(p) in guesses], http_dir, guesses)
        everything.update(offered)
    return everything


def _project(page: pagelog.Page) -> str:
    return pagelog.Listings.project_of(page.url)


def _builds_from_source(job: Run, settings: Mapping[str, str]) -> bool:
    """``--no-binary`` on the command line or in pip's configuration: pip may build what
    the pages offer as wheels, so none is fetched ahead (it would cost only its bytes:
    one in a requirement file does)."""
    given = option_values(job.pip_args, options.spellings("--no-binary"))
    return bool(settings.get("no-binary")) or next(given, None) is not None


def _settings(job: Run) -> Mapping[str, str]:
    """pip's configuration and ``PIP_*`` values (none when it cannot be read: no pins
    from it, so fewer pages may stay unchanged)."""
    try:
        return _config(job).values()
    except ConfigError:
        return {}


def _config(job: Run) -> PipConfig:
    """pip's configuration as the run read it (loaded here for a job made without it)."""
    return job.config or PipConfig.load(job.pip_args, job.env, job.target.facts.prefix)


def _dry_run(
    pip: invoke.PipInvocation,
    hidden: Callable[[bytes], bool] | None = None,
    errors: BinaryIO | None = None,
) -> int:
    """pip's dry run, its output streamed as pip's own but for the "Would install" line
    (and the ``hidden`` ones).

    Run as every pip is (``process.run``): Ctrl-C reaches pip, we wait for its status.
    """

    def show(line: bytes) -> None:
        if not line.startswith(b"Would install ") and not (hidden and hidden(line)):
            pip.console.relay(line)

    return pip.run(label="pip's dry run", each_line=show, stderr=errors)
