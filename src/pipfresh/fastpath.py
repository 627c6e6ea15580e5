"""The fast install path: pip resolves, the store installs.

pip decides what to install (``pip install --dry-run --report`` with the
user's own arguments, fresh index pages as always); wheels missing from the
partition's store are obtained through pip (``pip wheel``, so the managed
cache, authentication, proxies, certificates and hashes keep working) and
added; replaced versions are uninstalled by pip; then every wheel is linked
from the store in parallel by ``install``.

Anything outside the supported set goes to plain pip, and the summary says
why. Until the parity tests hold it is opt-in: ``PIPFRESH_INSTALLER=store``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from . import httpcache, install, pip
from .args import PipArgs
from .errors import PipfreshError
from .interpreter import Target
from .partition import Partition
from .store import STORE_LAYOUT, Compiler, Entry, Store, stored
from .summary import Summary

INSTALLER_ENV = "PIPFRESH_INSTALLER"
DEFAULT_INSTALLER = "pip"
INSTALLERS = ("store", "pip")

# pip install options the store installer does not handle: plain pip runs instead.
_UNSUPPORTED = {
    "-e": "editable installs",
    "--editable": "editable installs",
    "--src": "editable installs",
    "-t": "--target",
    "--target": "--target",
    "--prefix": "--prefix",
    "--root": "--root",
    "--user": "--user",
    "--dry-run": "--dry-run",
    "--no-compile": "--no-compile",
    "-I": "--ignore-installed",
    "--ignore-installed": "--ignore-installed",
    "-h": "--help",
    "--help": "--help",
}
# pip install options that take a value (the next token when not given with "=").
_VALUED = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "--trusted-host", "--cert", "--client-cert", "--proxy", "--timeout",
    "--retries", "-C", "--config-settings", "--only-binary", "--no-binary", "--progress-bar",
    "--upgrade-strategy", "--root-user-action", "--report", "--platform", "--python-version",
    "--implementation", "--abi", "--log", "--exists-action", "--keyring-provider",
    "--use-feature", "--use-deprecated", "--global-option", "--build-option", "--resume-retries",
}  # fmt: skip
_NOT_ABBREVIATIONS = {"--pre", "--progress-bar", "--use-pep517", "--use-feature"}

# Options that tell pip where and how to fetch and build; ``pip wheel`` needs the same.
_FETCH_VALUED = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--cert",
    "--client-cert",
    "--proxy",
    "--timeout",
    "--retries",
    "--keyring-provider",
    "-C",
    "--config-settings",
    "--only-binary",
    "--no-binary",
    "--use-feature",
}
_FETCH_FLAGS = {
    "--no-index",
    "--pre",
    "--prefer-binary",
    "--no-build-isolation",
    "--isolated",
    "--check-build-dependencies",
    "--use-pep517",
}
_REQ_FILE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                     "--trusted-host", "--no-index", "--pre", "--prefer-binary",
                     "--only-binary", "--no-binary"}  # fmt: skip
_NEVER_STORE = {"pip", "setuptools"}  # pip writes versioned launchers for these


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
) -> Decision:
    """Whether this run may use the store; the reason is for the summary."""
    if command != "install":
        return Decision("pip", f"not an install ({command})")
    given = environ.get(INSTALLER_ENV, "").strip().lower()
    choice = given or DEFAULT_INSTALLER
    if choice not in INSTALLERS:
        raise PipfreshError(f"{INSTALLER_ENV}={choice}: choose one of {', '.join(INSTALLERS)}")
    if choice == "pip":
        return Decision("pip", f"{INSTALLER_ENV}=pip" if given else "default")
    if partition is None:
        return Decision("pip", f"{parsed.user_cache_choice} given")
    if os.name != "posix":
        return Decision("pip", "the store installer supports POSIX targets only")
    if not target.facts.is_venv:
        return Decision("pip", "the target is not a virtual environment")
    if parsed.report == "-":
        return Decision("pip", "--report - (to stdout)")
    unsupported = unsupported_option(parsed.args)
    if unsupported is not None:
        return Decision("pip", f"{unsupported} (not supported by the store installer)")
    return Decision("store", f"{INSTALLER_ENV}=store")


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
        if "=" not in token and name in _VALUED:
            skip = True
            continue
        if name.startswith("--"):
            if name in _UNSUPPORTED:
                return _UNSUPPORTED[name]
            if name in _NOT_ABBREVIATIONS:
                continue
            # optparse accepts any unambiguous prefix: --edit, --targ, --us...
            hits = [o for o in _UNSUPPORTED if o.startswith("--") and o.startswith(name)]
            if hits and len(name) > 2:
                return _UNSUPPORTED[hits[0]]
        else:
            for char in name[1:]:  # grouped short flags: -qI, -Ue DIR
                if "-" + char in _UNSUPPORTED:
                    return _UNSUPPORTED["-" + char]
                if char in "rcifC":  # takes a value: the rest of the token is it
                    break
    return None


# -- the run -----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One distribution of the dry-run report, with what the install needs to know."""

    name: str
    version: str
    url: str
    sha256: str
    is_wheel: bool
    requested: bool
    direct_url: str | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]

    def requirement(self) -> str:
        return f"{self.name} @ {self.url} --hash=sha256:{self.sha256}"


@dataclass
class Outcome:
    """What the fast path did, for the summary."""

    code: int
    fallback: str | None = None  # why plain pip ran after all
    from_store: int = 0
    added: int = 0


def install_with_store(
    partition: Partition,
    target: Target,
    program: pip.PipProgram,
    pip_args: list[str],
    env: Mapping[str, str],
    report_path: Path,
    summary: Summary,
    quiet: bool,
) -> int:
    """``run``, with the summary told which installer ran in the end and why."""
    outcome = run(partition, target, program, pip_args, env, report_path, quiet)
    if outcome.fallback is not None:
        summary.installer = "pip"
        summary.installer_reason = outcome.fallback
    elif outcome.code == 0:
        summary.installer_reason = f"{outcome.from_store} from the store, {outcome.added} added"
    return outcome.code


def run(
    partition: Partition,
    target: Target,
    program: pip.PipProgram,
    pip_args: list[str],
    env: Mapping[str, str],
    report_path: Path,
    quiet: bool,
) -> Outcome:
    """Resolve with pip, install from the store; fall back to plain pip when needed."""
    code = _dry_run(program.command([*pip_args, "--dry-run"]), env)
    if code != 0:
        return Outcome(code)
    try:
        items, why = _items(report_path)
    except (OSError, ValueError) as exc:
        items, why = [], f"cannot read pip's report: {exc}"
    if why is not None:
        return Outcome(pip.run(program.command(pip_args), env), fallback=why)
    if not items:
        return Outcome(0)

    store = Store(partition.state_dir / STORE_LAYOUT)
    entries = stored(store, (i.sha256 for i in items))
    missing = [i for i in items if i.sha256 not in entries]
    if missing:
        code, added = _obtain(
            store, missing, target, program, pip_args, env, quiet, partition.pip_cache
        )
        if code != 0:
            return Outcome(code)
        entries.update(added)
    code = _uninstall_replaced(target, program, items, env, quiet)
    if code != 0:
        return Outcome(code)
    _install_all(items, entries, target, program, env)
    if not quiet:
        names = " ".join(f"{i.name}-{i.version}" for i in sorted(items, key=lambda i: i.name))
        print(f"Successfully installed {names}")
    return Outcome(0, from_store=len(items) - len(missing), added=len(missing))


def _dry_run(argv: list[str], env: Mapping[str, str]) -> int:
    """pip's dry run, its output streamed as pip's own but for the "Would install" line.

    Like ``pip.run``: Ctrl-C reaches pip (same process group) and we wait for its status.
    """
    proc = subprocess.Popen(
        argv, env=dict(env), stdout=subprocess.PIPE, pass_fds=pip.inherited_fds()
    )
    assert proc.stdout is not None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for line in proc.stdout:
            if not line.startswith(b"Would install "):
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code


def _items(report_path: Path) -> tuple[list[Item], str | None]:
    """The report's items, or the reason the store cannot install them."""
    data = json.loads(report_path.read_text(encoding="utf-8"))
    items = []
    for raw in data.get("install") or []:
        meta = raw.get("metadata") or {}
        name = str(meta.get("name", ""))
        info: dict[str, Any] = raw.get("download_info") or {}
        archive = info.get("archive_info")
        if not isinstance(archive, dict):
            kind = "a VCS checkout" if "vcs_info" in info else "a local directory"
            return [], f"{name} comes from {kind}"
        if canonicalize_name(name) in _NEVER_STORE:
            return [], f"{name} gets pip's versioned launchers"
        sha256 = (archive.get("hashes") or {}).get("sha256")
        if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
            sha256 = archive["hash"].split("=", 1)[1]
        if not sha256:
            return [], f"{name} has no sha256 in pip's report"
        url = str(info.get("url", ""))
        filename = url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
        direct = bool(raw.get("is_direct"))
        items.append(
            Item(
                name=name,
                version=str(meta.get("version", "")),
                url=url,
                sha256=str(sha256),
                is_wheel=filename.endswith(".whl"),
                requested=bool(raw.get("requested")),
                direct_url=json.dumps(info, sort_keys=True) if direct else None,
            )
        )
    return items, None


def _obtain(
    store: Store,
    missing: list[Item],
    target: Target,
    program: pip.PipProgram,
    pip_args: Sequence[str],
    env: Mapping[str, str],
    quiet: bool,
    pip_cache: Path,
) -> tuple[int, dict[str, Entry]]:
    """Store the missing items: wheels pip's dry run left in its HTTP cache (hash-checked),
    the rest through ``pip wheel`` (download or build, via the managed cache)."""
    with tempfile.TemporaryDirectory(prefix="pipfresh-wheels-") as tmp:
        wheels = _from_http_cache(missing, pip_cache / program.http_dir, Path(tmp, "cached"))
        rest = [i for i in missing if i.sha256 not in wheels]
        if rest:
            reqs = Path(tmp, "requirements.txt")
            lines = [*fetch_options_from_files(pip_args), *(i.requirement() for i in rest)]
            reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
            wheel_dir = Path(tmp, "wheels")
            argv = ["wheel", "--no-deps", "--wheel-dir", str(wheel_dir), *fetch_options(pip_args)]
            argv += ["-q"] * int(quiet) + ["-r", str(reqs)]
            proc = subprocess.run(
                program.command(argv),
                env=dict(env),
                stdout=subprocess.PIPE,
                check=False,
                pass_fds=pip.inherited_fds(),
            )
            if proc.returncode != 0:
                sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
                return proc.returncode, {}
            wheels.update(_match_wheels(rest, wheel_dir))
        entries = store.add(wheels, Compiler(target.python, env))
    return 0, entries


def _from_http_cache(items: list[Item], http_dir: Path, into: Path) -> dict[str, Path]:
    """Wheels whose body is in pip's ``http-v2`` cache with the report's sha256, by name."""
    if http_dir.name != "http-v2":
        return {}  # the older format keeps the body inside a serialized blob
    found: dict[str, Path] = {}
    for item in items:
        if not item.is_wheel or not item.url.startswith(("http://", "https://")):
            continue
        meta = httpcache.entry_path(http_dir, item.url)
        body = meta.with_name(meta.name + ".body")
        try:
            if _sha256(body) != item.sha256:
                continue
            into.mkdir(exist_ok=True)
            link = into / item.filename
            os.symlink(body, link)
        except OSError:
            continue
        found[item.sha256] = link
    return found


def _match_wheels(missing: list[Item], wheel_dir: Path) -> dict[str, Path]:
    by_name: dict[tuple[str, str], Path] = {}
    for path in wheel_dir.glob("*.whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        by_name[(str(name), canonicalize_version(version))] = path
    wheels = {}
    for item in missing:
        key = (str(canonicalize_name(item.name)), canonicalize_version(item.version))
        wheel = by_name.get(key)
        if wheel is None:
            raise PipfreshError(f"pip wheel did not produce a wheel for {item.name} {item.version}")
        if item.is_wheel and _sha256(wheel) != item.sha256:
            raise PipfreshError(f"{wheel.name} does not match the sha256 in pip's report")
        wheels[item.sha256] = wheel
    return wheels


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_options(args: Sequence[str]) -> list[str]:
    """The user's options that say where and how to fetch and build, for ``pip wheel``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        name, eq, _value = token.partition("=")
        if name in _FETCH_FLAGS:
            out.append(token)
        elif name in _FETCH_VALUED:
            out.append(token)
            if not eq and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
        elif len(name) > 2 and name[:2] in ("-i", "-f", "-C") and not name.startswith("--"):
            out.append(token)  # -iURL
        i += 1
    return out


def fetch_options_from_files(args: Sequence[str]) -> list[str]:
    """Index and find-links lines of the user's requirement files (``-r``), recursively."""
    files = []
    i = 0
    while i < len(args):
        token = args[i]
        name, eq, value = token.partition("=")
        if name in ("-r", "--requirement"):
            if not eq and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            files.append(Path(value))
        elif token.startswith("-r") and len(token) > 2 and not token.startswith("--"):
            files.append(Path(token[2:]))
        i += 1
    lines: list[str] = []
    seen: set[Path] = set()
    for file in files:
        lines += _options_in(file, seen)
    return lines


def _options_in(path: Path, seen: set[Path]) -> list[str]:
    try:
        real = path.resolve()
        if real in seen:
            return []
        seen.add(real)
        text = real.read_text(encoding="utf-8")
    except OSError:
        return []  # pip reports unreadable files itself
    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        name = words[0].split("=", 1)[0]
        if name in ("-r", "--requirement") and len(words) > 1:
            lines += _options_in(real.parent / words[1], seen)
        elif name in _REQ_FILE_OPTIONS:
            lines.append(line)
    return lines


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
    target: Target,
    program: pip.PipProgram,
    items: list[Item],
    env: Mapping[str, str],
    quiet: bool,
) -> int:
    """pip uninstalls the versions being replaced, as ``pip install`` would first."""
    present = _installed_names(target)
    replaced = [i.name for i in items if canonicalize_name(i.name) in present]
    if not replaced:
        return 0
    argv = ["uninstall", "--yes", *(["-q"] if quiet else []), *replaced]
    return pip.run(program.command(argv), env)


def _install_all(
    items: list[Item],
    entries: Mapping[str, Entry],
    target: Target,
    program: pip.PipProgram,
    env: Mapping[str, str],
) -> None:
    scheme = install.TargetScheme.for_venv(target.facts)
    template = install.script_template(program.version)
    linker = install.linker_from_env(env)
    interpreter = str(target.python)
    requests = [
        install.Request(entries[i.sha256], i.name, i.requested, i.direct_url) for i in items
    ]

    def one(request: install.Request) -> None:
        install.install(request, scheme, interpreter, template, linker)

    workers = min(len(requests), 2 * (os.cpu_count() or 1), 16)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        for _ in pool.map(one, requests):
            pass
