"""Whether a run installs through the store: the options and settings it cannot honour.

The store installer handles installs into a POSIX virtual environment with pipfresh's
managed cache; any option (on the command line, in ``PIP_*`` or pip's configuration
files) it cannot honour sends the run to plain pip, and the summary says why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipfresh.errors import PipfreshError
from pipfresh.layout import Partition
from pipfresh.pip import options
from pipfresh.pip.args import PipArgs
from pipfresh.pip.config import ConfigError, PipConfig, strtobool
from pipfresh.store import install
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
