"""Command-line routing and output only; the work lives in the other modules.

``pipfresh cache dir|info|prune|purge|key`` are pipfresh's own; every other
command, and ``pipfresh cache list|remove``, is pip's, run with the managed cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipfresh cache", description="Manage pipfresh's cache.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="{dir,info,prune,purge,key}")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--python", help="target interpreter or venv (default: $VIRTUAL_ENV, else ours)"
        )
        return p

    add("dir", "print the partition's directory, nothing else")
    info = add("info", "size and entries by kind, per partition")
    info.add_argument("--all", action="store_true", help="every partition under the root")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    prune = add("prune", "drop stale metadata and what can serve no run")
    prune.add_argument("--all", action="store_true", help="every partition under the root")
    prune.add_argument(
        "--ci",
        action="store_true",
        help="--mode ci: also drop downloads and the store (cheap to fetch and rebuild)",
    )
    prune.add_argument(
        "--keep-index-pages", action="store_true", help="keep index pages for cheap 304s"
    )
    from pipfresh.cache.prune import DEFAULT_KEEP_RUNS, DEFAULT_MODE, MODES

    prune.add_argument(
        "--mode",
        choices=list(MODES),
        help="; ".join(f"{name}: {text}" for name, text in MODES.items())
        + f" (default: {DEFAULT_MODE}; --ci is --mode ci)",
    )
    prune.add_argument(
        "--keep-runs",
        type=int,
        default=DEFAULT_KEEP_RUNS,
        metavar="N",
        help=f"--mode recent keeps what the last N runs used (default {DEFAULT_KEEP_RUNS})",
    )
    prune.add_argument(
        "--max-size", metavar="SIZE", help="--mode size cap, e.g. 500M, 2G (default 1G)"
    )
    prune.add_argument("--json", action="store_true", help="machine-readable output")
    purge = add("purge", "empty the partition")
    purge.add_argument("--all", action="store_true", help="every partition under the root")
    key = add("key", "a CI cache key and a restore prefix that stays within the partition")
    key.add_argument("files", nargs="*", type=Path, help="dependency files (default: found in .)")
    key.add_argument("--json", action="store_true", help="machine-readable output")
    key.add_argument(
        "--github-output",
        type=Path,
        metavar="FILE",
        help="append key, restore-key, dir, partition, state (on GitHub Actions: $GITHUB_OUTPUT)",
    )
    key.add_argument(
        "--dotenv", type=Path, metavar="FILE", help="append PIPFRESH_KEY=... lines (GitLab)"
    )
    return parser


def cache_main(argv: list[str]) -> int:
    from pipfresh.cache import inventory, prune
    from pipfresh.layout import partition_id
    from pipfresh.session import open_root, resolve_target
    from pipfresh.target.interpreter import Target

    opts = _parser().parse_args(argv)
    root = open_root(os.environ)

    def target_partition() -> tuple[str, Target]:
        target = resolve_target(opts.python, os.environ, root)
        return partition_id(target.facts), target

    if opts.action == "dir":
        pid, _ = target_partition()
        print(root.partition(pid).check().path)  # a CI job saves it: never a link's target
        return 0
    if opts.action == "key":
        from pipfresh.ci import outputs

        target = resolve_target(opts.python, os.environ, root)
        return outputs.key_command(root, target.facts, opts, os.environ)

    # Every partition is checked before any is touched: a link refuses the whole command.
    chosen = ""  # which interpreter chose the partition, for prune's and purge's lines
    if getattr(opts, "all", False):
        partitions = root.partitions()
    else:
        pid, target = target_partition()
        partitions = [root.partition(pid).check()]
        chosen = f" · python {target.python} ({target.source})"
    if opts.action in ("prune", "purge") and not partitions and not getattr(opts, "json", False):
        print(f"pipfresh: no partitions under {root.path}: nothing to {opts.action}")
        return 0
    if opts.action == "info":
        found = [inventory.take(p) for p in partitions if p.path.is_dir()]
        if opts.json:
            print(json.dumps([inv.to_json() for inv in found], indent=2))
        elif not found:
            print(f"no partitions yet under {root.path}")
        else:
            print("\n".join(inventory.describe(inv) for inv in found))
        return 0
    if opts.action == "prune":
        mode = opts.mode or ("ci" if opts.ci else "size" if opts.max_size else prune.DEFAULT_MODE)
        rules = prune.rules_for(
            keep_index_pages=opts.keep_index_pages,
            ci=opts.ci,
            mode=mode,
            keep_runs=opts.keep_runs,
            max_size=prune.parse_size(opts.max_size) if opts.max_size else prune.DEFAULT_MAX_SIZE,
        )
        results = {p.id: prune.prune(p, rules, on_wait=_waiting(p.id)) for p in partitions}
        if opts.json:
            print(
                json.dumps(
                    {pid: {"removed": r.removed, "freed": r.freed} for pid, r in results.items()}
                )
            )
        else:
            for pid, result in results.items():
                removed = (
                    ", ".join(f"{n} {k}" for k, n in sorted(result.removed.items())) or "nothing"
                )
                print(
                    f"pipfresh: pruned {pid}: {removed}; freed {result.freed / 1048576:.1f} MB"
                    + chosen
                )
        return 0
    if opts.action == "purge":
        for p in partitions:
            freed = prune.purge(p, on_wait=_waiting(p.id))
            print(f"pipfresh: purged {p.id}; freed {freed / 1048576:.1f} MB{chosen}")
        return 0
    raise PipfreshError(f"unknown cache action {opts.action}")


def _waiting(pid: str) -> Callable[[], None]:
    """Say why a prune or purge does not start at once: installs are using the partition."""

    def say() -> None:
        print(f"pipfresh: waiting for running installs to finish with {pid}...", file=sys.stderr)

    return say
