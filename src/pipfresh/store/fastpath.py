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
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from packaging.utils import (
    canonicalize_name,
)
from packaging.version import Version

from pipfresh.cli.progress import Progress
from pipfresh.cli.summary import Summary
from pipfresh.errors import PipfreshError
from pipfresh.layout import Partition
from pipfresh.pip import invoke, options, output, report
from pipfresh.pip.args import PipArgs
from pipfresh.pip.config import ConfigError, PipConfig, strtobool
from pipfresh.pip.report import Item
from pipfresh.resolve import hashpins, kept, reuse
from pipfresh.resolve.buildkey import BuildOptions
from pipfresh.store import install, localbuild, obtain, wheelcheck
from pipfresh.store.entries import STORE_LAYOUT, Entry, Store, stored
from pipfresh.target.interpreter import Target

INSTALLER_ENV = "PIPFRESH_INSTALLER"
DEFAULT_INSTALLER = "store"
INSTALLERS = ("store", "pip")

# pip install options the store installer does not handle: plain pip runs instead.
_UNSUPPORTED = options.UNSUPPORTED
# Short options taking a value: the rest of a group (``-Ue DIR``, ``-rFILE``) is it.
_SHORT_VALUED = "".join(sorted(n[1] for n in options.VALUED if len(n) == 2))


@dataclass(frozen=True)
class Decision:
    """Which installer runs, and why (the summary shows both)."""

    installer: str
    reason: str


def decide(
    command: str,
    parsed: PipArgs,
    target: Target,
    partition: Partition | None,
    environ: Mapping[str, str],
    config: PipConfig | None = None,
) -> Decision:
    """Whether this run may use the store; the reason is for the summary (``config``:
    pip's configuration, when read already)."""
    if command != "install":
        return Decision("pip", f"not an install ({command})")
    given = environ.get(INSTALLER_ENV, "").strip().lower()
    choice = given or DEFAULT_INSTALLER
    if choice not in INSTALLERS:
        raise PipfreshError(f"{INSTALLER_ENV}={choice}: choose one of {', '.join(INSTALLERS)}")
    if choice == "pip":
        return Decision("pip", f"{INSTALLER_ENV}=pip" if given else "default")
    install.link_mode(environ)  # a bad PIPFRESH_LINK_MODE stops the run before pip starts
    if partition is None:  # the user chose the cache, or the managed one is unusable
        cache = parsed.user_cache_choice
        return Decision("pip", f"{cache} given" if cache else "the managed cache is unusable")
    if os.name != "posix":
        return Decision("pip", "the store installer supports POSIX targets only")
    if not target.facts.is_venv:
        return Decision("pip", "the target is not a virtual environment")
    if parsed.report == "-":
        return Decision("pip", "--report - (to stdout)")
    unsupported = unsupported_option(parsed.args) or configured_option(environ, target, config)
    if unsupported is not None:
        return Decision("pip", f"{unsupported} (not supported by the store installer)")
    return Decision("store", f"{INSTALLER_ENV}=store" if given else "default")


# The first pip taking --config-settings on a requirement line (obtain builds that way).
_PER_REQUIREMENT_SETTINGS = Version("23.1")

# The unsupported options as pip's configuration keys (``PIP_<KEY>`` or ``<key>`` in a
# config file), by how pip reads them: a valued option is set by any non-empty value, a
# ``store_true`` flag by a true boolean (tox exports ``PIP_USER=0``: not ``--user``), and
# ``no-compile``, a ``store_false`` flag, turns compiling off only when *false*: pip
# stores the boolean itself into ``compile`` (so ``PIP_NO_COMPILE=1`` still compiles).
_UNSUPPORTED_VALUED = ("target", "prefix", "root", "src", "editable")
_UNSUPPORTED_FLAGS = ("user", "ignore-installed", "dry-run")
_COMPILE_KEYS = ("compile", "no-compile")  # both are pip's ``compile``, True unless false


def configured_option(
    environ: Mapping[str, str], target: Target, config: PipConfig | None = None
) -> str | None:
    """An unsupported option set in pip's environment or configuration files."""
    try:
        values = (config or PipConfig.load((), environ, target.facts.prefix)).values()
        for key in _UNSUPPORTED_VALUED:
            if values.get(key):
                return _where(key, environ)
        for key in _UNSUPPORTED_FLAGS:
            if key in values and strtobool(values[key]):
                return _where(key, environ)
        for key in _COMPILE_KEYS:
            if key in values and not strtobool(values[key]):
                return _where(key, environ)
    except ConfigError as exc:
        return f"pip's configuration: {exc}"  # pip reports it in its own words
    return None


def _where(key: str, environ: Mapping[str, str]) -> str:
    """How the summary names a setting: the variable, else the config key."""
    variable = f"PIP_{key.upper().replace('-', '_')}"
    if any(k.upper().replace("-", "_") == variable for k in environ):
        return variable
    return f"{key} in pip's configuration"


def unsupported_option(args: Sequence[str]) -> str | None:
    """The first option the store installer cannot honour, as pip would read it."""
    skip = False
    for token in args:
        if skip:  # the value of the previous option, whatever it looks like
            skip = False
            continue
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        name = token.split("=", 1)[0]
        if name in _UNSUPPORTED:
            return _UNSUPPORTED[name]
        if "=" not in token and name in options.VALUED:
            skip = True
            continue
        if name.startswith("--"):
            if name in options.ALL:  # an option of its own (--pre), not an abbreviation
                continue
            # optparse accepts any unambiguous prefix: --edit, --targ, --us...
            hits = [o for o in _UNSUPPORTED if o.startswith("--") and o.startswith(name)]
            if hits and len(name) > 2:
                return _UNSUPPORTED[hits[0]]
        else:
            for char in name[1:]:  # grouped short flags: -qI, -Ue DIR
                if "-" + char in _UNSUPPORTED:
                    return _UNSUPPORTED["-" + char]
                if char in _SHORT_VALUED:  # takes a value: the rest of the token is it
                    break
    return None


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


@dataclass(frozen=True)
class Job:
    """One install through the store: where, with which pip, the user's arguments."""

    partition: Partition
    target: Target
    program: invoke.PipProgram
    pip_args: list[str]
    env: Mapping[str, str]
    report_path: Path
    quiet: bool
    progress: Progress = field(default_factory=Progress.silent)  # long phases, on stderr
    config: PipConfig | None = None  # pip's configuration, read once (``run`` reads it else)

    @property
    def pip(self) -> invoke.PipInvocation:
        """The user's pip command: this pip, this environment, the user's arguments."""
        return invoke.PipInvocation(self.program, self.env, tuple(self.pip_args), self.quiet)

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
            code = job.pip.run(label="pip install")
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
        code, builds = localbuild.build(found, job.pip, default, Path(tmp))
        if code != 0:  # pip builds it again, and fails in its own words
            code = job.pip.run(label="pip install")
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
    resolution = _resolve(job, builds, capture)
    how = resolution.how
    if builds is not None and (
        resolution.code != 0 or builds.complete(job.report_path) != 0
    ):  # pip says why in its own words, naming the project rather than its wheel
        code = job.pip.run(label="pip install")
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
        code = job.pip.run(label="pip install")
        return Outcome(code, fallback=why, resolution=how)
    if not items:
        return Outcome(0, resolution=how, revalidated=resolution.revalidated)
    # pip checks each archive against the user's --hash pins; a dry run that downloaded
    # nothing (or a reused report) checked nothing: what the pins refuse is pip's to refuse.
    why = job.pins.refusal(items)
    if why is not None:
        code = job.pip.run()
        return Outcome(code, fallback=why, resolution=how)

    # sha256 -> file pip checked in this run, of what pip's HTTP cache does not hold
    downloaded = capture.matching(items, job.partition.pip_cache / job.program.http_dir)
    if downloaded:
        _keep(job, downloaded, items, resolution.pages)
    by_store = [i for i in items if not i.via_pip]
    store = Store(job.partition.state_dir / STORE_LAYOUT)
    # An sdist's wheel is stored under a key of its build options too (obtain.store_keys).
    keys = obtain.store_keys(by_store, job.pip_args, job.env, job.target)
    found = stored(store, keys.values())
    entries = {sha: found[key] for sha, key in keys.items() if key in found}
    reverified = sum(1 for e in {e.path: e for e in entries.values()}.values() if e.reverified)
    missing = [i for i in by_store if i.sha256 not in entries]
    try:  # a wheel pip would reject (or only pip installs as pip does): pip runs, and says so
        if missing:
            http_dir = job.partition.pip_cache / job.program.http_dir
            sources = obtain.Sources(http_dir, downloaded)
            code, added = obtain.obtain(store, missing, job.target, job.pip, sources, job.progress)
            if code != 0:
                return Outcome(code, resolution=how)
            entries.update(added)
        plans = install.plans(entries)
    except wheelcheck.UnsupportedWheel as exc:
        code = job.pip.run()
        return Outcome(code, fallback=str(exc), resolution=how)
    for changed in install.changed_in_place(
        job.target.facts, [(i.name, i.version) for i in by_store]
    ):
        if not job.quiet:
            print(changed.note(), file=sys.stderr)
    names = {  # as pip's resolver spelled them (a local project: as its metadata does)
        i.name: output.display_name(i.name, _source_url(i.url, builds), resolution.names)
        for i in items
    }
    lines = None if job.quiet else _lines(job, names)
    if lines is not None:
        print(lines.installing(), flush=True)
    uninstalls = output.Uninstalls()
    code = _uninstall_replaced(job, by_store, lines, uninstalls)
    if code != 0:
        return Outcome(code, resolution=how)
    _install_all(job, by_store, entries, plans, names)
    store.linked({e.path: e for e in entries.values()}.values())  # os.link changed their ctime
    by_pip = [i for i in items if i.via_pip]
    code = _install_with_pip(job, by_pip, uninstalls)
    if code != 0:
        return Outcome(code, resolution=how)
    for item in by_pip:
        if not item.requested:  # pip was asked for it by name: a dependency all the same
            install.unrequest(job.target.facts, item.name, item.version)
    if lines is not None:
        for line in [*uninstalls.lines(lines), *lines.after_uninstalls(), lines.installed()]:
            print(line)
    return Outcome(
        0,
        from_store=len(by_store) - len(missing),
        added=len(missing),
        resolution=how,
        revalidated=resolution.revalidated,
        reverified=reverified,
        store_keys=sorted(set(keys.values())),
    )


def _source_url(url: str, builds: localbuild.Builds | None) -> str:
    """Where pip would have installed ``url`` from: a built wheel's local project."""
    built = builds.of_url(url) if builds is not None else None
    return url if built is None else built.local.url


@dataclass(frozen=True)
class _Resolution:
    code: int
    how: str  # for the summary: "pip (...)" or "reused: ..."
    revalidated: int = 0
    names: Mapping[str, str] = field(default_factory=dict)  # as pip spelled them (canonical ->)
    pages: list[str] = field(default_factory=list)  # the index pages pip's dry run read


def _resolve(job: Job, builds: localbuild.Builds | None, capture: kept.Capture) -> _Resolution:
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
                sys.stderr.buffer.write(errors.read())
                sys.stderr.flush()
        return resolution
    inputs = reuse.inputs(job.pip_args, job.env, job.target, job.program)
    if inputs.digest is None:
        return _dry_run_alone(job, f"pip ({inputs.reason}: not reusable)", capture)
    recorded = reuse.load(job.partition, inputs.digest)
    changed = ""
    if recorded is not None:
        revalidator = reuse.Revalidator(job.pip_args, job.env)
        unchanged, first_changed = revalidator.all_unchanged(recorded.pages)
        if first_changed is None:
            job.report_path.write_text(json.dumps(recorded.report), encoding="utf-8")
            how = f"reused: {unchanged} index pages unchanged"
            return _Resolution(0, how, unchanged, recorded.names)
        changed = f"{first_changed}; "
    theirs = reuse.user_log(job.pip_args, job.env, job.target.facts.prefix, job.config)
    with tempfile.TemporaryDirectory(prefix="pipfresh-log-") as tmp:
        log = theirs or Path(tmp, "pip.log")
        code, text = _dry_run_keeping(job, capture, job.pip_args, log, theirs is None)
        fetched = reuse.fetched_pages(text)
        names = output.spellings(text) if code == 0 else {}
        if code != 0:
            return _Resolution(code, f"pip ({changed.rstrip('; ') or 'failed'})", pages=fetched)
        if theirs is not None:  # what pip read is in their log, among other runs'
            how = f"pip ({changed}a --log of yours: not recorded)"
            return _Resolution(0, how, names=names, pages=fetched)
        http_dir = job.partition.pip_cache / job.program.http_dir
        pages, why = reuse.pages_from_log(log, http_dir)
    how = f"pip ({changed}{why or _record(job, inputs.digest, pages, names)})"
    return _Resolution(0, how, names=names, pages=fetched)


def _dry_run_alone(
    job: Job,
    how: str,
    capture: kept.Capture,
    builds: localbuild.Builds | None = None,
    errors: BinaryIO | None = None,
) -> _Resolution:
    """pip's dry run, nothing recorded; logged to read the names pip spells (into the
    user's own log when there is one: pip writes one log, appending). With ``builds``,
    of their wheels in the local projects' places (``errors``: where its stderr goes)."""
    own = reuse.user_log(job.pip_args, job.env, job.target.facts.prefix, job.config)
    args = job.pip_args if builds is None else builds.arguments(job.pip_args)
    hidden = None if builds is None else builds.hidden
    with tempfile.TemporaryDirectory(prefix="pipfresh-log-") as tmp:
        log = own or Path(tmp, "pip.log")
        code, text = _dry_run_keeping(job, capture, args, log, own is None, hidden, errors)
    names = output.spellings(text) if code == 0 else {}
    return _Resolution(code, how, names=names, pages=reuse.fetched_pages(text))


def _dry_run_keeping(
    job: Job,
    capture: kept.Capture,
    args: Sequence[str],
    log: Path,
    add_log: bool,
    hidden: Callable[[bytes], bool] | None = None,
    errors: BinaryIO | None = None,
) -> tuple[int, str]:
    """pip's dry run of ``args``, keeping what it downloads (``kept``), and what it logged
    to ``log`` in this run (``add_log``: ours, else the user's own). A kept file pip found
    replaced under its URL (its page lists another hash) is dropped, and pip resolves once
    more: as plain pip would, it then downloads the new one."""
    argv = [*args, "--dry-run", *(["--log", str(log)] if add_log else [])]
    pip = capture.hooked(job.pip.with_args(argv))
    start = _size(log)
    code = _dry_run(pip, hidden, errors)
    text = _read_log(log, start)
    if code == 0:
        return code, text
    http_dir = job.partition.pip_cache / job.program.http_dir
    dropped = kept.drop_replaced(http_dir, text)
    if not dropped:
        return code, text
    if not job.quiet:
        print(
            f"pipfresh: note: {len(dropped)} kept download(s) no longer match their index "
            "page (replaced under the same URL): dropped, resolving again",
            file=sys.stderr,
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


def _lines(job: Job, names: Mapping[str, str]) -> output.Lines | None:
    """What pip prints about this install (None when pip's report cannot be read again)."""
    try:
        report = json.loads(job.report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    spelled = {str(canonicalize_name(k)): v for k, v in names.items()}
    facts, version = job.target.facts, job.program.version
    return output.Lines.of(report, spelled, facts, job.pip_args, job.env, version, job.config)


def _record(job: Job, digest: str, pages: list[reuse.Page], names: Mapping[str, str]) -> str:
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
    unlisted = reuse.unattested(items, pages, job.partition.pip_cache / job.program.http_dir)
    if unlisted is not None:
        return f"not recorded: {unlisted.name}'s sha256 is not on its index page"
    try:
        reuse.save(job.partition, digest, pages, job.report_path, names)
    except (OSError, ValueError) as exc:
        return f"not recorded: {exc}"
    return f"recorded {len(pages)} index pages"


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
            sys.stdout.buffer.write(line)
            sys.stdout.flush()

    return pip.run(label="pip's dry run", each_line=show, stderr=errors)


def _installed_names(target: Target) -> set[str]:
    """Canonical names of the distributions in the target's site-packages."""
    names = set()
    dirs = {d for d in (target.facts.purelib, target.facts.platlib) if d}
    for directory in dirs:
        try:
            listing = os.listdir(directory)
        except OSError:
            continue
        for entry in listing:
            if entry.endswith((".dist-info", ".egg-info")):
                names.add(str(canonicalize_name(entry.split("-", 1)[0].rsplit(".", 1)[0])))
    return names


def _uninstall_replaced(
    job: Job, items: list[Item], lines: output.Lines | None, uninstalls: output.Uninstalls
) -> int:
    """pip uninstalls the versions being replaced, as ``pip install`` would first (in its
    installation order; what pip says of each is printed with the install's last lines)."""
    present = _installed_names(job.target)
    replaced = [i.name for i in items if canonicalize_name(i.name) in present]
    if not replaced:
        return 0
    if lines is not None:
        rank = {name: n for n, name in enumerate(lines.order)}
        replaced.sort(key=lambda name: rank.get(str(canonicalize_name(name)), len(rank)))
    argv = ["uninstall", "--yes", *(["-q"] if job.quiet else []), *replaced]
    return _run_gathering(job, argv, "pip uninstall", uninstalls.from_uninstall, uninstalls)


def _install_with_pip(job: Job, items: list[Item], uninstalls: output.Uninstalls) -> int:
    """pip and setuptools, which pip installs with launchers of its own, at the resolved
    versions: one short ``pip install --no-deps`` instead of a whole fallback.

    Each line carries the report's sha256, so pip picks and verifies exactly the file
    the report resolved (not, say, a build-tagged twin) and hash-checking mode holds;
    the report lists only what pip would install, so the same version installed is
    installed again (with ``--force-reinstall`` pip does so). Of what it prints, only
    what pip's install of the whole set prints too (an ``Attempting uninstall`` block)
    is kept, to be printed with the other lines."""
    if not items:
        return 0
    pins = [f"{i.name}=={i.version} --hash=sha256:{i.sha256}" for i in items]
    options = obtain.fetch_options(job.pip_args)
    with tempfile.TemporaryDirectory(prefix="pipfresh-pins-") as tmp:
        reqs = Path(tmp, "requirements.txt")
        reqs.write_text("\n".join([*obtain.fetch_options_from_files(job.pip_args), *pins]) + "\n")
        argv = ["install", "--no-deps", "--force-reinstall", *(["-q"] if job.quiet else [])]
        argv += [*options, "-r", str(reqs)]
        label = "pip install (pip, setuptools)"
        return _run_gathering(job, argv, label, uninstalls.from_install, uninstalls)


def _run_gathering(
    job: Job,
    argv: list[str],
    label: str,
    take: Callable[[str], None],
    uninstalls: output.Uninstalls,
) -> int:
    """pip with its stdout read line by line by ``take``; shown whole if it fails."""

    def each(line: bytes) -> None:
        take(line.decode("utf-8", "replace").rstrip("\r\n"))

    seen = len(uninstalls.raw)
    code = job.pip.run(argv, label, each_line=each)
    if code != 0:
        for line in uninstalls.raw[seen:]:
            print(line)
    return code


def _keep(job: Job, downloaded: Mapping[str, Path], items: list[Item], pages: list[str]) -> None:
    """What the dry run downloaded, into pip's HTTP cache where its page vouches for it
    (``kept.into_pip_cache``): neither ``pip wheel`` nor a later dry run downloads it."""
    readers: list[reuse.Revalidator] = []

    def fetch(url: str) -> bytes | None:
        if "****" in url or "@" in urllib.parse.urlsplit(url).netloc:
            return None  # pip redacts credentials in its log: never send a guess
        if not readers:
            try:
                readers.append(reuse.Revalidator(job.pip_args, job.env))
            except (OSError, ValueError):  # a certificate that does not load
                return None
        return readers[0].read(url)

    http_dir = job.partition.pip_cache / job.program.http_dir
    kept.into_pip_cache(downloaded, items, http_dir, pages, fetch)


def _install_all(
    job: Job,
    items: list[Item],
    entries: Mapping[str, Entry],
    plans: Mapping[str, install.Plan],
    names: Mapping[str, str],
) -> None:
    scheme = install.TargetScheme.for_venv(job.target.facts)
    template = install.script_template(job.program.version)
    interpreter = str(job.target.python)
    requests = [
        install.Request(
            entries[i.sha256], names[i.name], i.requested, i.direct_url, plans[i.sha256]
        )
        for i in items
    ]
    if not requests:
        return
    sample = requests[0].entry  # decides how files are placed: probed once per filesystem
    where = (scheme.purelib, scheme.platlib, scheme.scripts, scheme.data)
    linker = install.linker_from_env(job.env, sample.file(next(iter(sample.files))), where)
    if linker.note and not job.quiet:
        print(f"pipfresh: note: {linker.note}", file=sys.stderr)

    def one(request: install.Request) -> None:
        install.install(request, scheme, interpreter, template, linker)

    workers = min(len(requests), 2 * (os.cpu_count() or 1), 16)
    phase = job.progress.phase("installing", len(requests), "wheel")
    with phase as installing, ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for _ in pool.map(one, requests):
            installing.advance()
