"""The parts of a store install that pip still runs, as ``pip install`` would run them.

pip uninstalls the versions being replaced (in its installation order) and installs
pip and setuptools itself (they get launchers of pip's own); what it prints of those
is gathered, to be shown where pip's install of the whole set shows it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import (
    canonicalize_name,
)

from pipfresh.pip import output
from pipfresh.pip.report import Item
from pipfresh.store import obtain
from pipfresh.target.interpreter import Target

if TYPE_CHECKING:
    from pipfresh.store.fastpath import Job


def _installed_names(target: Target) -> set[str]:
    """Canonical names of the distributions in the target's site-packages (``.dist-info``
    and ``.egg-info`` alike, as pip finds them)."""
    dirs = list(dict.fromkeys(d for d in (target.facts.purelib, target.facts.platlib) if d))
    names = set()
    for dist in metadata.distributions(path=dirs):
        try:
            name = dist.metadata["Name"]
        except (OSError, TypeError, ValueError):  # no readable metadata: pip skips it too
            continue
        if name:
            names.add(str(canonicalize_name(name)))
    return names


def uninstall_replaced(
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


def install_with_pip(job: Job, items: list[Item], uninstalls: output.Uninstalls) -> int:
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
            job.console.line(line)
    return code
