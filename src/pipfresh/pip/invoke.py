"""Choosing which pip runs, giving it the managed cache, and running it.

pip is configured through the environment, never the command line: pip's
build-isolation subprocess ignores ``--cache-dir`` but honours ``PIP_*``
variables, so only the environment reaches every pip that a run starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import IO

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from pipfresh.console import Console
from pipfresh.errors import InterpreterError, PipfreshError
from pipfresh.pip import process
from pipfresh.target.interpreter import Target

MIN_PIP = Version("23.0")  # first pip with a stable --report
HTTP_V2_PIP = Version("23.3")  # first pip writing http-v2/
TRUSTING_PIP = Version("26.2")  # first pip trusting cached index pages for max-age


@dataclass(frozen=True)
class PipProgram:
    """A pip that can install into the target: the target's own, or ours with ``--python``."""

    argv: tuple[str, ...]
    version: Version
    description: str

    @property
    def http_dir(self) -> str:
        """Where this pip keeps its HTTP cache inside the cache directory."""
        return "http-v2" if self.version >= HTTP_V2_PIP else "http"

    def command(self, pip_args: Sequence[str]) -> list[str]:
        return [*self.argv, *pip_args]


@dataclass(frozen=True)
class PipInvocation:
    """How this run starts pip: which pip, its environment, the user's arguments.

    Every pip a run starts (the install, its dry run, ``pip wheel``, an uninstall)
    is one of these, run by ``process.run``: ``run()`` is the user's own command,
    ``run(argv)`` another pip command with the same pip and environment.
    """

    program: PipProgram
    env: Mapping[str, str]
    args: tuple[str, ...]
    console: Console  # where pip's output goes when pipfresh relays it

    @property
    def quiet(self) -> bool:
        return self.console.quiet

    def with_args(self, args: Sequence[str]) -> PipInvocation:
        """The same pip, resolving ``args`` instead of the user's arguments."""
        return replace(self, args=tuple(args))

    def command(self, argv: Sequence[str] | None = None) -> list[str]:
        return self.program.command(self.args if argv is None else argv)

    def trusting_cache(self) -> PipInvocation:
        """The same pip, taking index pages from its cache while their ``max-age`` lasts:
        only once every page left there was verified in this run
        (``revalidate.Revalidator.pip_for``)."""
        env = {k: v for k, v in self.env.items() if k != "PIP_REFRESH_PACKAGE"}
        return replace(self, env=env)

    def run(
        self,
        argv: Sequence[str] | None = None,
        label: str = "pip",
        *,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        each_line: Callable[[bytes], None] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> int:
        """Run pip on ``argv`` (default: the user's arguments) and return its exit status,
        as a shell would report it: ``process.run``, so Ctrl-C reaches pip directly (same
        process group), pip's status rather than a traceback of ours is what the caller
        sees, and pip inherits the partition lock. ``label`` names the phase."""
        command, env = self.command(argv), self.env
        return process.run(
            command, env, label, stdout=stdout, stderr=stderr, each_line=each_line, poll=poll
        )


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def select(target: Target) -> PipProgram:
    """The target's pip when it is new enough, else pipfresh's own pip via ``--python``.

    The second case makes venvs without pip (``venv --without-pip``, uv venvs) work.
    """
    facts = target.facts
    own = _version(facts.pip_version)
    if own is not None and own >= MIN_PIP:
        return PipProgram((str(target.python), "-m", "pip"), own, f"target's pip {own}")
    ours = Version(metadata.version("pip"))
    requires = metadata.metadata("pip")["Requires-Python"] or ""
    try:
        supported = SpecifierSet(requires)
    except InvalidSpecifier:
        supported = SpecifierSet()
    target_version = ".".join(str(p) for p in facts.version_info[:3])
    if requires and not supported.contains(target_version, prereleases=True):
        have = f"pip {own}" if own else "no pip"
        raise InterpreterError(
            f"{target.python} (Python {target_version}) has {have}, and pipfresh's pip {ours} "
            f"needs Python {requires}: install pip >= {MIN_PIP} into the target "
            f"({target.python} -m ensurepip --upgrade)"
        )
    why = f"target has pip {own}" if own else "target has no pip"
    return PipProgram(
        (sys.executable, "-m", "pip", "--python", str(target.python)),
        ours,
        f"pipfresh's pip {ours} via --python ({why})",
    )


# pip commands younger than the oldest pip pipfresh runs (MIN_PIP): the first pip with each.
COMMAND_SINCE = {"lock": Version("25.1")}


def require_command(program: PipProgram, command: str) -> None:
    """Refuse, in one line that says which pip is needed, a command this pip does not have
    (pip's own answer is only "unknown command")."""
    since = COMMAND_SINCE.get(command)
    if since is not None and program.version < since:
        raise PipfreshError(
            f"pip {command} needs pip >= {since}, and this run has the {program.description}: "
            "upgrade the target's pip (python -m pip install --upgrade pip)"
        )


def trusts_max_age(program: PipProgram) -> bool:
    """Whether this pip takes a cached index page as fresh for its ``max-age`` (pip >= 26.2):
    pipfresh then forces ``--refresh-package :all:`` unless it verified the pages itself."""
    return program.version >= TRUSTING_PIP


def environment(
    base: Mapping[str, str], program: PipProgram, cache_dir: Path | None
) -> dict[str, str]:
    """pip's environment: the managed cache, fresh index pages, no self-check.

    ``cache_dir`` None means the user chose the cache (``--cache-dir`` or
    ``--no-cache-dir``): their choice stands and we add nothing cache-related.
    """
    env = dict(base)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if cache_dir is not None:
        env["PIP_CACHE_DIR"] = str(cache_dir)
        env.pop("PIP_NO_CACHE_DIR", None)
    if trusts_max_age(program):
        # Older pips revalidate every index page anyway (Cache-Control: max-age=0).
        env["PIP_REFRESH_PACKAGE"] = ":all:"
    return env


def user_env_notes(base: Mapping[str, str]) -> list[str]:
    """Variables in the user's environment that pipfresh overrides, to say so once."""
    notes = []
    if base.get("PIP_NO_CACHE_DIR"):
        notes.append(
            "PIP_NO_CACHE_DIR is ignored: pipfresh manages the cache (pass --no-cache-dir)"
        )
    if base.get("PIP_CACHE_DIR"):
        notes.append("PIP_CACHE_DIR is ignored: pipfresh manages the cache (pass --cache-dir)")
    return notes


__all__ = ["PipInvocation", "PipProgram", "environment", "select"]
