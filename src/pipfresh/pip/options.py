"""pip install's options, in one table: how each is spelt, whether it takes a value, and
what pipfresh must do about it.

Reading a command line as pip does needs every option that takes a value (its value
is not a requirement, whatever it looks like); each concern (what ``pip wheel`` must
be given too, what changes a build, what the store cannot honour) is a column here,
not a list of its own elsewhere. ``tests/unit/test_pip_options.py`` checks the table
against pip's own parser.

    options.named(FETCH, valued=True)   # {"-i", "--index-url", ...}
    options.takes_value("--req")        # True: optparse reads an unambiguous prefix
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Concern = Literal["fetch", "index", "build", "local-build", "inputs", "log", "listing"]
FETCH: Concern = "fetch"  # where and how pip fetches and builds: ``pip wheel`` needs it too
INDEX: Concern = "index"  # a requirement file's index lines ``pip wheel`` is given
BUILD: Concern = "build"  # changes what a build produces: part of a built wheel's store key
LOCAL_BUILD: Concern = "local-build"  # what a local project's build takes besides FETCH
INPUTS: Concern = "inputs"  # names a file whose contents are inputs of the resolution
LOG: Concern = "log"  # pip logs there: pipfresh cannot add its own --log
LISTING: Concern = "listing"  # a local listing: its pages cannot be revalidated


@dataclass(frozen=True)
class Option:
    """One of pip install's options (every spelling pip accepts)."""

    names: tuple[str, ...]
    valued: bool = False
    concerns: frozenset[Concern] = frozenset()
    unsupported: str | None = None  # why the store installer cannot honour it
    legacy: bool = False  # only older pips (>= invoke.MIN_PIP) have it


def _o(
    *names: str,
    valued: bool = False,
    unsupported: str | None = None,
    legacy: bool = False,
    c: Iterable[Concern] = (),
) -> Option:
    return Option(names, valued, frozenset(c), unsupported, legacy)


_V = True
_EDIT = "editable installs"
OPTIONS: tuple[Option, ...] = (
    _o("-r", "--requirement", valued=_V, c=[INPUTS]),
    _o("-c", "--constraint", valued=_V, c=[INPUTS]),
    _o("--build-constraint", valued=_V, c=[BUILD, LOCAL_BUILD]),
    _o("--requirements-from-script", valued=_V),
    _o("--no-deps", "--no-dependencies"),
    _o("--only-deps", "--only-dependencies"),
    _o("-e", "--editable", valued=_V, unsupported=_EDIT),
    _o("--dry-run", unsupported="--dry-run"),
    _o("-t", "--target", valued=_V, unsupported="--target"),
    _o("--platform", valued=_V),
    _o("--python-version", valued=_V),
    _o("--implementation", valued=_V),
    _o("--abi", valued=_V),
    _o("--user", unsupported="--user"),
    _o("--no-user"),
    _o("--root", valued=_V, unsupported="--root"),
    _o("--prefix", valued=_V, unsupported="--prefix"),
    _o("--src", "--source", "--source-dir", "--source-directory", valued=_V, unsupported=_EDIT),
    _o("-U", "--upgrade"),
    _o("--upgrade-strategy", valued=_V),
    _o("--force-reinstall"),
    _o("-I", "--ignore-installed", unsupported="--ignore-installed"),
    _o("--ignore-requires-python", c=[LOCAL_BUILD]),
    _o("--no-build-isolation", c=[FETCH, BUILD]),
    _o("--use-pep517", c=[FETCH, BUILD]),
    _o("--no-use-pep517", c=[BUILD, LOCAL_BUILD], legacy=True),
    _o("--check-build-dependencies", c=[FETCH]),
    _o("--break-system-packages"),
    _o("-C", "--config-settings", valued=_V, c=[FETCH, BUILD]),
    _o("--build-option", valued=_V, c=[BUILD, LOCAL_BUILD], legacy=True),
    _o("--global-option", valued=_V, c=[BUILD, LOCAL_BUILD], legacy=True),
    _o("--compile"),
    _o("--no-compile", unsupported="--no-compile"),
    _o("--no-warn-script-location"),
    _o("--no-warn-conflicts"),
    _o("--require-hashes"),
    _o("--no-require-hashes"),
    _o("--progress-bar", valued=_V),
    _o("--root-user-action", valued=_V),
    _o("--report", valued=_V),
    _o("--group", valued=_V),
    _o("--no-clean"),
    _o("--pre", c=[FETCH, INDEX]),
    _o("--all-releases", valued=_V),
    _o("--only-final", valued=_V),
    _o("--no-binary", valued=_V, c=[FETCH, INDEX]),
    _o("--only-binary", valued=_V, c=[FETCH, INDEX]),
    _o("--prefer-binary", c=[FETCH, INDEX]),
    _o("-i", "--index-url", "--pypi-url", valued=_V, c=[FETCH, INDEX]),
    _o("--extra-index-url", valued=_V, c=[FETCH, INDEX]),
    _o("--no-index", c=[FETCH, INDEX, LISTING]),
    _o("--refresh-package", valued=_V),
    _o("-f", "--find-links", valued=_V, c=[FETCH, INDEX, LISTING]),
    _o("--uploaded-prior-to", valued=_V),
    # pip's general options
    _o("-h", "--help", unsupported="--help"),
    _o("--debug"),
    _o("--isolated", c=[FETCH]),
    _o("--require-virtualenv", "--require-venv"),
    _o("--python", valued=_V),
    _o("-v", "--verbose"),
    _o("-q", "--quiet"),
    _o("--log", "--log-file", "--local-log", valued=_V, c=[LOG]),
    _o("--no-input"),
    _o("--keyring-provider", valued=_V, c=[FETCH]),
    _o("--proxy", valued=_V, c=[FETCH]),
    _o("--no-proxy-env"),
    _o("--retries", valued=_V, c=[FETCH]),
    _o("--timeout", "--default-timeout", valued=_V, c=[FETCH]),
    _o("--exists-action", valued=_V),
    _o("--trusted-host", valued=_V, c=[FETCH, INDEX]),
    _o("--cert", valued=_V, c=[FETCH]),
    _o("--client-cert", valued=_V, c=[FETCH]),
    _o("--cache-dir", valued=_V),
    _o("--no-cache-dir", c=[FETCH]),
    _o("--disable-pip-version-check"),
    _o("--no-color"),
    _o("--no-python-version-warning"),
    _o("--use-feature", valued=_V, c=[FETCH]),
    _o("--use-deprecated", valued=_V),
    _o("--resume-retries", valued=_V),
)

_BY_NAME = {name: option for option in OPTIONS for name in option.names}
ALL = frozenset(_BY_NAME)
VALUED = frozenset(name for name, option in _BY_NAME.items() if option.valued)
# The options the store installer cannot honour, by spelling: why (for the summary).
UNSUPPORTED = {name: o.unsupported for name, o in _BY_NAME.items() if o.unsupported}


def named(concern: Concern, *, valued: bool | None = None) -> frozenset[str]:
    """Every spelling of the options of ``concern`` (only valued ones, or only flags)."""
    return frozenset(
        name
        for name, option in _BY_NAME.items()
        if concern in option.concerns and valued in (None, option.valued)
    )


def takes_value(option: str) -> bool:
    """Whether pip reads the next argument as this long option's value (optparse
    accepts any unambiguous prefix: ``--req FILE``; ``--pre`` is an option of its own)."""
    if option in _BY_NAME:
        return _BY_NAME[option].valued
    return len(option) > 3 and any(o.startswith(option) for o in VALUED if o.startswith("--"))


def spellings(name: str) -> frozenset[str]:
    """Every spelling of the option ``name`` is one of: ``-r`` -> ``{"-r", "--requirement"}``."""
    return frozenset(_BY_NAME[name].names)


def positionals(args: Sequence[str]) -> Iterator[tuple[int, str]]:
    """Each positional argument after the command, with its index (optparse's reading)."""
    i = 1  # args[0] is the command
    while i < len(args):
        token = args[i]
        if token == "--":
            yield from ((j, args[j]) for j in range(i + 1, len(args)))
            return
        if token.startswith("--"):
            i += 2 if "=" not in token and takes_value(token) else 1
            continue
        if token.startswith("-") and token != "-":
            i += 1
            for at, char in enumerate(token[1:], start=2):
                if "-" + char in VALUED:  # -rFILE, or -r FILE
                    i += 0 if token[at:] else 1
                    break
            continue
        yield i, token
        i += 1
