"""``pipfresh cache dir|info|prune|purge|key``: pipfresh's own cache commands, one function each.

``pipfresh cache list|remove`` are pip's (``main`` runs them with the managed cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipfresh.cli.render import human_size
from pipfresh.errors import PipfreshError

if TYPE_CHECKING:
    from pipfresh.cache.inventory import Inventory
    from pipfresh.layout import CacheRoot, Partition
    from pipfresh.target.interpreter import Facts, Target


def cache_main(argv: list[str]) -> int:
    """Parse ``pipfresh cache ...`` and run the one command it names."""
    opts = _parser().parse_args(argv)
    from pipfresh.session import open_root

    root = open_root(os.environ)
    if opts.action == "dir":
        return cache_dir(root, opts)
    if opts.action == "key":
        return cache_key(root, opts)
    # Every partition is checked before any is touched: a link refuses the whole command.
    chosen = ""  # which interpreter chose the partition, for prune's and purge's lines
    if getattr(opts, "all", False):
        partitions = root.partitions()
    else:
        target = _target(root, opts)
        partitions = [_partition(root, target.facts).check()]
        chosen = f" · python {target.python} ({target.source})"
    if opts.action in ("prune", "purge") and not partitions and not getattr(opts, "json", False):
        print(f"pipfresh: no partitions under {root.path}: nothing to {opts.action}")
        return 0
    if opts.action == "info":
        return cache_info(root, partitions, opts)
    if opts.action == "prune":
        return cache_prune(partitions, opts, chosen)
    if opts.action == "purge":
        return cache_purge(partitions, chosen)
    raise PipfreshError(f"unknown cache action {opts.action}")


def cache_dir(root: CacheRoot, opts: argparse.Namespace) -> int:
    """The partition's directory, nothing else (a CI job saves it: never a link's target)."""
    print(_partition(root, _target(root, opts).facts).check().path)
    return 0


def cache_key(root: CacheRoot, opts: argparse.Namespace) -> int:
    """Print the CI key; on GitHub Actions (or when told) also write the step outputs."""
    from pipfresh.ci import keys, outputs

    facts = _target(root, opts).facts
    base = Path.cwd()
    files = list(opts.files) or keys.discover(base)
    if not files:
        print(
            f"pipfresh: warning: no dependency files in {base} "
            f"({', '.join(keys.DEPENDENCY_PATTERNS)}): the key hashes nothing, so it never "
            "changes when your dependencies do; name the files: pipfresh cache key FILES...",
            file=sys.stderr,
        )
    key = keys.for_target(facts, files, base)
    values = outputs.outputs(key, _partition(root, facts).check())
    if opts.json:
        print(json.dumps({**values, "files": list(key.files)}))
    else:
        print(f"key={key.key}\nrestore-key={key.restore_prefix}")
    github = opts.github_output or outputs.github_output(os.environ)
    if github is not None:
        outputs.append(github, outputs.github_lines(values))
    if opts.dotenv is not None:
        outputs.append(opts.dotenv, outputs.dotenv_lines(values))
    return 0


def cache_info(root: CacheRoot, partitions: list[Partition], opts: argparse.Namespace) -> int:
    """Size and entries by kind, per partition."""
    from pipfresh.cache import inventory

    found = [_with_prunes(p, inventory.take(p)) for p in partitions if p.path.is_dir()]
    if opts.json:
        print(json.dumps([inv.to_json() for inv in found], indent=2))
    elif not found:
        print(f"no partitions yet under {root.path}")
    else:
        print("\n".join(describe(inv) for inv in found))
    return 0


def _with_prunes(partition: Partition, inv: Inventory) -> Inventory:
    """``inv`` with what ``cache prune`` would leave in each mode, at its defaults."""
    from pipfresh.cache import prune

    modes = {mode: prune.rules_for(mode=mode) for mode in prune.MODES}
    previews = prune.preview(partition, modes, on_wait=_waiting(partition.id))
    inv.after_prune = {mode: max(0, inv.size - r.freed) for mode, r in previews.items()}
    return inv


def cache_prune(partitions: list[Partition], opts: argparse.Namespace, chosen: str) -> int:
    """Drop what the rules of the chosen mode say can serve no run."""
    from pipfresh.cache import prune

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
        return 0
    for pid, result in results.items():
        removed = ", ".join(f"{n} {k}" for k, n in sorted(result.removed.items())) or "nothing"
        print(f"pipfresh: pruned {pid}: {removed}; freed {human_size(result.freed, 'MB')}{chosen}")
    return 0


def cache_purge(partitions: list[Partition], chosen: str) -> int:
    """Empty each partition."""
    from pipfresh.cache import prune

    for p in partitions:
        freed = prune.purge(p, on_wait=_waiting(p.id))
        print(f"pipfresh: purged {p.id}; freed {human_size(freed, 'MB')}{chosen}")
    return 0


def describe(inv: Inventory) -> str:
    """``cache info``'s lines for one partition; sizes in one column of MB."""
    from pipfresh.cache.rules import DEFAULT_MODE

    def mb(size: int) -> str:
        return human_size(size, "MB")

    shared = ""
    if inv.linked_bytes:
        own = mb(inv.size - inv.linked_bytes).strip()
        shared = f" ({own} its own, {mb(inv.linked_bytes).strip()} shared with other partitions)"
    lines = [
        f"partition {inv.id}",
        f"  path        {inv.path}",
        f"  size        {mb(inv.size)}{shared}",
    ]
    if inv.python or inv.pip_version:
        lines.append(f"  used by     Python {inv.python or '?'}, pip {inv.pip_version or '?'}")
    if inv.last_used:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inv.last_used))
        lines.append(f"  last used   {stamp}")
    rows = [
        (label, inv.entries.get(key, 0), inv.entry_bytes.get(key, 0), "") for key, label in _KINDS
    ]
    rows.append(("built wheels", inv.built_wheels, inv.built_bytes, ""))
    notes = [f"bytecode {mb(inv.store_bytecode_bytes).strip()}"] if inv.store_bytecode_bytes else []
    if inv.store_linked_bytes:
        linked = mb(inv.store_linked_bytes).strip()
        notes.append(f"{linked} also linked into environments or other partitions")
    in_envs = f"  ({'; '.join(notes)})" if notes else ""
    rows.append(("store", inv.store_entries, inv.store_bytes, in_envs))
    if inv.resolutions:
        rows.append(("resolutions", inv.resolutions, inv.resolution_bytes, ""))
    lines += [f"  {label:<14}{count:>6}  {mb(size):>12}{tail}" for label, count, size, tail in rows]
    for title, counts in (("broken now  ", inv.broken), ("dropped     ", inv.dropped)):
        if counts:
            lines.append(f"  {title}" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for i, (mode, left) in enumerate(inv.after_prune.items()):
        title = "prune leaves" if i == 0 else ""
        default = "  (the default)" if mode == DEFAULT_MODE else ""
        lines.append(f"  {title:<12}  {'--mode ' + mode:<14}{mb(left):>12}{default}")
    return "\n".join(lines)


_KINDS = [
    ("wheel", "wheels"),
    ("sdist", "sdists"),
    ("metadata", "metadata files"),
    ("index-page", "index pages"),
    ("other", "other"),
]


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
    _prune_options(add("prune", "drop stale metadata and what can serve no run"))
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


def _prune_options(prune: argparse.ArgumentParser) -> None:
    from pipfresh.cache.prune import DEFAULT_KEEP_RUNS, DEFAULT_MODE, MODES

    prune.add_argument("--all", action="store_true", help="every partition under the root")
    prune.add_argument(
        "--ci",
        action="store_true",
        help="--mode ci: also drop downloads and the store (cheap to fetch and rebuild)",
    )
    prune.add_argument(
        "--keep-index-pages", action="store_true", help="keep index pages for cheap 304s"
    )
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


def _target(root: CacheRoot, opts: argparse.Namespace) -> Target:
    from pipfresh.session import resolve_target

    return resolve_target(opts.python, os.environ, root)


def _partition(root: CacheRoot, facts: Facts) -> Partition:
    from pipfresh.layout import partition_id

    return root.partition(partition_id(facts))


def _waiting(pid: str) -> Callable[[], None]:
    """Say why a prune or purge does not start at once: installs are using the partition."""

    def say() -> None:
        print(f"pipfresh: waiting for running installs to finish with {pid}...", file=sys.stderr)

    return say
