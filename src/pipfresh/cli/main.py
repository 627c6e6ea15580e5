"""Command-line routing and output only; the work lives in the other modules.

``pipfresh cache dir|info|prune|purge|key`` are pipfresh's own; every other
command, and ``pipfresh cache list|remove``, is pip's, run with the managed cache.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pipfresh import __version__
from pipfresh.errors import PipfreshError

OWN_OPTIONS = """\
pipfresh's own options (before or after the command; everything else goes to pip):
  --python PYTHON        target interpreter or venv (default: $VIRTUAL_ENV,
                         else the interpreter running pipfresh)
  --summary-json FILE    install: also write the run's summary as JSON ("-":
                         stdout, and pip's own output then goes to stderr)
  -q                     no summary line (passed on to pip as well)

environment:
  PIPFRESH_CACHE_DIR     cache root (default: the platform's user cache
                         directory, ~/.cache/pipfresh on Linux)
  PIPFRESH_INSTALLER     store (default: install from pipfresh's store of
                         unpacked wheels) or pip (plain pip install)
  PIPFRESH_LINK_MODE     how the store installer places files in the target:
                         auto (default: reflink where the filesystem clones,
                         else hardlink), reflink, hardlink or copy
  PIPFRESH_LOCK_TIMEOUT  seconds to wait for a partition another pipfresh
                         holds (default 600)
"""

USAGE = (
    """\
usage: pipfresh [--python PYTHON] COMMAND [pip options]
       pipfresh cache {dir,info,prune,purge,key} [options]

Runs pip with a managed cache directory, one partition per interpreter ABI:
index pages are revalidated on every run (a version published a second ago is
found), while downloaded and built wheels are reused.

  pipfresh install -r requirements.txt      any `pip install` arguments
  pipfresh download|wheel|lock|index|...     any other pip command, same cache

"""
    + OWN_OPTIONS
)


def command_help(command: str) -> str:
    """What ``pipfresh COMMAND --help`` prints before pip's own help for COMMAND."""
    return (
        f"pipfresh {command}: pip {command} (its help follows) with pipfresh's managed cache.\n\n"
        + OWN_OPTIONS
        + f"\n{'-' * 30} pip {command} --help {'-' * 30}\n"
    )


OWN_CACHE_COMMANDS = ("dir", "info", "prune", "purge", "key")
_LEADING = ("--python", "--summary-json")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except PipfreshError as exc:
        print(f"pipfresh: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a run says where it stopped itself (session.py)
        print("pipfresh: interrupted", file=sys.stderr)
        return 130


def _dispatch(argv: list[str]) -> int:
    leading: list[str] = []
    while argv and argv[0].split("=", 1)[0] in _LEADING:
        take = 1 if "=" in argv[0] else 2
        leading += argv[:take]
        argv = argv[take:]
    if not argv or (argv[0] in ("-h", "--help", "help") and len(argv) == 1):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"pipfresh {__version__}")
        return 0
    command, rest = argv[0], leading + argv[1:]
    if command == "cache" and (not argv[1:] or _first_positional(argv[1:]) in OWN_CACHE_COMMANDS):
        from pipfresh.cli.cache import cache_main

        # `pipfresh --python X cache dir`: the option belongs to the subcommand.
        return cache_main(argv[1:2] + leading + argv[2:])
    return _pip_command(command, rest)


def _pip_command(command: str, rest: list[str]) -> int:
    """pip's ``command`` through a run (``session``), its notes and summary printed here."""
    from pipfresh.cli import render
    from pipfresh.pip.args import split
    from pipfresh.session import run_pip_command

    parsed = split(rest)
    if {"-h", "--help"} & set(parsed.args):
        print(command_help(command), end="", flush=True)
    console = render.Console(quiet=parsed.quiet > 0)
    with render.stdout_for_json(parsed.summary_json):
        result = run_pip_command(command, rest, os.environ, console)
        return render.finish(result, console, parsed.summary_json)


def _first_positional(args: list[str]) -> str | None:
    skip = False
    for token in args:
        if skip:
            skip = False
            continue
        if token in _LEADING:
            skip = True
            continue
        if not token.startswith("-"):
            return token
    return None
