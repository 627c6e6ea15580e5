"""Getting the wheels the store lacks: from pip's HTTP cache, else through ``pip wheel``.

Wheels come through pip (download or build into the managed cache) so that
authentication, proxies, certificates and ``--require-hashes`` work as they do
for ``pip install``; every wheel is checked against the sha256 in pip's report.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence, Set
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from pipfresh.cache import fs
from pipfresh.cli.progress import Progress
from pipfresh.errors import PipfreshError
from pipfresh.phases import Phases
from pipfresh.pip import httpcache, invoke, options, reqfiles
from pipfresh.pip.args import option_values
from pipfresh.pip.report import Item
from pipfresh.resolve.buildkey import BuildOptions
from pipfresh.store.adding import Adding
from pipfresh.store.entries import Compiler, Entry, Store
from pipfresh.target.interpreter import Target

# Options that tell pip where and how to fetch and build; ``pip wheel`` needs the same.
_FETCH_VALUED = options.named(options.FETCH, valued=True)
_FETCH_FLAGS = options.named(options.FETCH, valued=False)
_FETCH_SHORT = tuple(sorted(name for name in _FETCH_VALUED if len(name) == 2))  # -iURL
_REQ_FILE_OPTIONS = options.named(options.INDEX)


@dataclass(frozen=True)
class Sources:
    """Where wheels may be already: pip's HTTP cache, and what its dry run downloaded."""

    http_dir: Path
    kept: Mapping[str, Path] = field(default_factory=dict)  # sha256 -> file, the report's


def obtain(
    store: Store,
    missing: list[Item],
    target: Target,
    pip: invoke.PipInvocation,
    sources: Sources,
    progress: Progress | None = None,
    phases: Phases | None = None,
    early: Adding | None = None,
) -> tuple[int, dict[str, Entry]]:
    """Store the missing items: wheels pip's dry run downloaded (``sources.kept``) or
    left in its HTTP cache (hash-checked), the rest through ``pip wheel`` (download or
    build, via the managed cache).

    Each wheel is unpacked as soon as it is there, and compiled while the next
    ones download or unpack: pip's downloads land in its HTTP cache one by one,
    so they are taken from there while ``pip wheel`` is still running. ``progress``
    shows the three phases, overlapping as they do; ``phases`` times what is left of
    unpacking and compiling once every wheel is there, as "compile". ``early``: the
    adding the wheels fetched while pip resolved went to (its block the caller's).
    """
    build = BuildOptions.of(pip.args, pip.env, target.facts.prefix)
    keys = store_keys(missing, pip.args, pip.env, target)  # fastpath looked them up already
    shown, wanted = progress or Progress.silent(), set(keys.values())
    obtaining = shown.phase("obtaining", len(wanted), "wheel")
    unpacking = shown.phase("unpacking", len(wanted), "wheel")
    compiling = shown.phase("compiling", len(wanted), "wheel", counting=False)
    scratch = tempfile.TemporaryDirectory(prefix="pipfresh-wheels-")
    staging: AbstractContextManager[Adding] = (
        store.adding(Compiler(target.python, pip.env)) if early is None else nullcontext(early)
    )
    with obtaining, unpacking, compiling, scratch as tmp, staging as adding:
        adding.watch(lambda sha256: unpacking.advance() if sha256 in wanted else None)

        def obtained() -> None:  # one count per wheel: each is shown
            for _new in range(sum(1 for key in wanted if key in adding) - obtaining.done):
                obtaining.advance()

        _take_kept(missing, sources.kept, adding)
        _take_local(missing, adding)
        _take_cached(missing, sources.http_dir, adding)
        obtained()
        rest = [i for i in missing if keys[i.sha256] not in adding]
        if rest:
            # pip's wheel cache ignores build options: a build under options must not use it
            fresh = not build.default and any(not i.is_wheel for i in rest)
            wheel_pip = pip.with_args([*pip.args, *["--no-cache-dir"] * fresh])
            poll = _taking_downloads(rest, sources.http_dir, adding, obtained)
            code = _pip_wheel(rest, Path(tmp), wheel_pip, build.config_settings, poll)
            if code != 0:
                for phase in (obtaining, unpacking, compiling):
                    phase.abandon()  # pip's error follows
                return code, {}
            late = [i for i in rest if keys[i.sha256] not in adding]
            for sha256, wheel in _match_wheels(late, Path(tmp, "wheels")).items():
                adding.submit(keys[sha256], wheel)
            obtained()
        with (phases or Phases()).timed("compile"):
            added = adding.finish(only=wanted)
    return 0, {i.sha256: added[keys[i.sha256]] for i in missing}


def store_keys(
    items: Sequence[Item], pip_args: Sequence[str], env: Mapping[str, str], target: Target
) -> dict[str, str]:
    """Each item's store key: a wheel's sha256; for an sdist, its build's (``buildkey``).

    ``fastpath`` looks items up by sha256 before ``obtain`` runs: an sdist built
    without build options is stored under its sha256 and found there even by a
    run with ``-C``. Looking up ``store_keys(...)`` values instead closes that.
    """
    build = BuildOptions.of(pip_args, env, target.facts.prefix)
    return {i.sha256: i.sha256 if i.is_wheel else build.key(i.sha256) for i in items}


def _take_kept(items: list[Item], kept: Mapping[str, Path], adding: Adding) -> None:
    """Submit the wheels pip's dry run downloaded (each checked by pip against the report)."""
    for item in items:
        path = kept.get(item.sha256) if item.is_wheel else None
        if path is not None:
            opened = open(path, "rb")  # noqa: SIM115 (adding closes it)
            adding.submit(item.sha256, Path(item.filename), opened)


def _taking_downloads(
    items: list[Item], http_dir: Path, adding: Adding, taken: Callable[[], None]
) -> Callable[[], None]:
    """What ``pip wheel``'s wait calls: take the wheels it downloaded meanwhile from pip's
    HTTP cache (``taken`` is told after each look)."""
    waiting = [i for i in items if i.is_wheel]
    rejected: dict[str, tuple[int, int, int]] = {}

    def take_downloaded() -> None:
        nonlocal waiting
        waiting = [i for i in waiting if not _take_cached([i], http_dir, adding, rejected)]
        taken()

    return take_downloaded


def _pip_wheel(
    items: list[Item],
    tmp: Path,
    pip: invoke.PipInvocation,
    config_settings: Sequence[str],
    poll: Callable[[], None],
) -> int:
    """``pip wheel --no-deps`` for ``items`` (``poll`` called while it runs); its output
    is shown only when it fails."""
    reqs = tmp / "requirements.txt"
    # pip applies -C to command-line requirements only: each built one gets them on its line
    settings = "".join(f" --config-settings={shlex.quote(v)}" for v in config_settings)
    reqs_lines = [i.requirement() + ("" if i.is_wheel else settings) for i in items]
    lines = [*fetch_options_from_files(pip.args), *reqs_lines]
    reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["wheel", "--no-deps", "--wheel-dir", str(tmp / "wheels"), *fetch_options(pip.args)]
    argv += ["-q"] * int(pip.quiet) + ["-r", str(reqs)]
    with open(tmp / "pip-wheel.log", "w+b") as log:
        code = pip.run(argv, "pip wheel", stdout=log, poll=poll)
        if code != 0:
            log.seek(0)
            pip.console.relay(log.read())
    return code


def _take_local(items: list[Item], adding: Adding) -> None:
    """Submit the local wheel files pip resolved (a path, a ``file:`` URL, a local project
    built this run) from where they are, if they still have the report's sha256:
    ``pip wheel`` would only copy them."""
    for item in items:
        if item.sha256 in adding or not item.is_wheel or not item.url.startswith("file:"):
            continue
        path = urllib.request.url2pathname(urllib.parse.urlsplit(item.url).path)
        try:
            opened = open(path, "rb")  # noqa: SIM115 (adding closes it)
        except OSError:
            continue
        try:
            matches = _sha256_of(opened) == item.sha256
        except OSError:
            matches = False
        if not matches:
            opened.close()  # changed since pip read it: pip wheel checks it and says so
            continue
        adding.submit(item.sha256, Path(item.filename), opened)


def _take_cached(
    items: list[Item],
    http_dir: Path,
    adding: Adding,
    rejected: dict[str, tuple[int, int, int]] | None = None,
) -> bool:
    """Submit the wheels whose body is in pip's ``http-v2`` cache with the report's sha256.

    The body is hashed through the descriptor it is unpacked from: pip may replace
    the file meanwhile, never change what was opened. While ``pip wheel`` runs
    (``rejected`` given) a body that did not match is not hashed again until it
    changes. Before it runs, a body that does not match is dropped: the file
    changed under its URL (the page lists the new hash), and pip's cache, which
    keeps files for ever, would fail ``pip wheel --hash`` on this run and every
    later one. Returns whether all were taken.
    """
    if http_dir.name != "http-v2":
        return False  # the older format keeps the body inside a serialized blob
    taken = True
    for item in items:
        if item.sha256 in adding:
            continue
        if not item.is_wheel or not item.url.startswith(("http://", "https://")):
            taken = False
            continue
        rejecting = {} if rejected is None else rejected
        got = submit_cached(item.url, item.sha256, item.filename, http_dir, adding, rejecting)
        taken = taken and got
        if not got and rejected is None and item.sha256 in rejecting:
            _drop_stale(httpcache.entry_path(http_dir, item.url), rejecting[item.sha256][0])
    return taken


def submit_cached(
    url: str,
    sha256: str,
    filename: str,
    http_dir: Path,
    adding: Adding,
    rejected: dict[str, tuple[int, int, int]],
) -> bool:
    """Submit the wheel whose body pip's ``http-v2`` cache holds for ``url``, if its sha256
    is ``sha256`` (hashed through the descriptor it is unpacked from); whether it was.
    A body that did not match is noted in ``rejected`` (inode, size, mtime) and not
    hashed again until it changes."""
    meta = httpcache.entry_path(http_dir, url)
    body = meta.with_name(meta.name + ".body")
    try:
        opened = open(body, "rb")  # noqa: SIM115 (adding closes it)
    except OSError:
        return False
    seen = (0, 0, 0)
    try:
        st = os.fstat(opened.fileno())
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        matches = rejected.get(sha256) != seen and _sha256_of(opened) == sha256
    except OSError:
        matches = False
    if not matches:
        opened.close()
        rejected[sha256] = seen
        return False
    adding.submit(sha256, Path(filename), opened)
    return True


def _drop_stale(meta: Path, inode: int) -> None:
    """Remove the entry whose body was hashed, not one another pip wrote since (nor its
    temporary files: a pip may be writing them right now)."""
    body = meta.with_name(meta.name + ".body")
    try:
        if os.lstat(body).st_ino != inode:
            return
        for path in (body, meta):
            os.unlink(path)
    except OSError:
        pass  # gone already: pip wheel fetches the file either way


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
        if item.is_wheel and fs.sha256(wheel) != item.sha256:
            raise PipfreshError(f"{wheel.name} does not match the sha256 in pip's report")
        wheels[item.sha256] = wheel
    return wheels


# What else a local project's build takes from ``pip install`` (``localbuild``): pip
# applies these to the command line's requirements, and checks its Requires-Python.
BUILD_VALUED = options.named(options.LOCAL_BUILD, valued=True)
BUILD_FLAGS = options.named(options.LOCAL_BUILD, valued=False)


def fetch_options(
    args: Sequence[str], valued: Set[str] = frozenset(), flags: Set[str] = frozenset()
) -> list[str]:
    """The user's options that say where and how to fetch and build, for ``pip wheel``
    (and ``valued``/``flags``, more options of the same kinds)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        name, eq, _value = token.partition("=")
        if name in _FETCH_FLAGS or name in flags:
            out.append(token)
        elif name in _FETCH_VALUED or name in valued:
            out.append(token)
            if not eq and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
        elif len(name) > 2 and name[:2] in _FETCH_SHORT and not name.startswith("--"):
            out.append(token)  # -iURL
        i += 1
    return out


def fetch_options_from_files(args: Sequence[str]) -> list[str]:
    """Index and find-links lines of the user's requirement files (``-r``), recursively."""
    lines = []
    for line in reqfiles.walk(option_values(args, reqfiles.REQUIREMENTS)).lines:
        _, words = line.split()
        if line.is_option and words and words[0].split("=", 1)[0] in _REQ_FILE_OPTIONS:
            lines.append(line.text)
    return lines


def _sha256_of(fp: BinaryIO) -> str:
    """``fs.sha256_of``, then back to the start: the file is submitted next."""
    digest = fs.sha256_of(fp)
    fp.seek(0)
    return digest
