"""Local projects are built once per run: ``pip wheel`` first, then pip resolves the wheel.

On the store path, ``pipfresh install ./proj`` (a directory, or a local sdist such as
the one tox installs into each env) would be built twice: pip's dry run prepares its
metadata in a build environment, then the wheel is built in another. So the project
is built first, by ``pip wheel --no-deps`` with the user's options and pip's
environment (build isolation, ``-C``, ``--no-binary``... hold as in ``pip install``),
and pip's dry run resolves the built wheel in its place. What pip records stays
pip's: the report and ``direct_url.json`` name the directory or the sdist, and a
project installed at the same version is reinstalled (pip reinstalls a local
project, but not a local wheel).

pip builds a local directory on every run, and so does this: a directory can change
between runs, and nothing is reused from an earlier build of one. An sdist has a hash:
a wheel built from the same bytes (without build options) is reused from pip's wheel
cache, as for an sdist from an index. Each wheel is stored by its own sha256, so a
project that builds the same bytes again links what is stored.

    found = localbuild.find(pip_args)               # the command line's local projects
    code, builds = localbuild.build(found, pip, default, tmp)     # pip: invoke.PipInvocation
    argv = builds.arguments(pip_args)               # for pip's dry run
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from pipfresh.cache import fs
from pipfresh.console import Console
from pipfresh.pip import invoke, options
from pipfresh.pip.report import Item
from pipfresh.store.obtain import (
    BUILD_FLAGS,
    BUILD_VALUED,
    fetch_options,
    fetch_options_from_files,
)

# pip's archive extensions (utils/filetypes.py) but the wheel's: an sdist it builds from a path.
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz",
                   ".tar.lz", ".tar.lzma", ".tar", ".zip")  # fmt: skip
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_EXTRAS = re.compile(r"^(.+)(\[[^\]]+\])$")
# pip < 23.1 writes direct_url.json from the link (no hash for a local file); later pips
# write the report's download_info, where both record the file's sha256.
_HASHES_RECORDED = Version("23.1")
# pip's dry run on a local wheel that is installed at its version already, instead of
# reinstalling as it does for the project's directory: not a line pip's install prints.
_KEPT_WHEEL = b"is already installed with the same version as the provided wheel"
_FIRST_LINES = (b"Looking in indexes:", b"Looking in links:")  # once, from the build
_VERBOSITY = re.compile(r"^-(q+|v+)$")


@dataclass(frozen=True)
class Local:
    """A command-line requirement naming a local project: a source tree or an sdist."""

    position: int  # in the pip arguments
    path: str  # absolute and normalised, as pip makes it into a file: URL
    extras: str  # "[a,b]" or ""
    is_dir: bool

    @property
    def url(self) -> str:
        """pip's ``path_to_url``."""
        return urllib.parse.urljoin("file:", urllib.request.pathname2url(self.path))


def find(pip_args: Sequence[str]) -> list[Local]:
    """The positional requirements of ``pip install`` that pip reads as a local source
    tree or sdist (``.``, ``./proj[extra]``, ``dist/proj-1.0.tar.gz``), as pip's
    ``parse_req_from_line`` does; URLs, ``name @ url`` and markers are left alone."""
    found = []
    for position, token in options.positionals(pip_args):
        if ";" in token or "@" in token or _URL.match(token):
            continue
        match = _EXTRAS.match(token)
        path, extras = (match.group(1), match.group(2)) if match else (token, "")
        looks_like_path = os.sep in token or token.startswith(".")
        full = os.path.normpath(os.path.abspath(path))
        if looks_like_path and os.path.isdir(full):
            if any(os.path.isfile(os.path.join(full, f)) for f in ("pyproject.toml", "setup.py")):
                found.append(Local(position, full, extras, is_dir=True))
        elif path.lower().endswith(_SDIST_SUFFIXES) and os.path.isfile(full):
            found.append(Local(position, full, extras, is_dir=False))
    return found


def _is_file(url: str, path: Path) -> bool:
    """Whether a ``file:`` URL in pip's report names ``path`` (however pip quoted it)."""
    if not url.startswith("file:"):
        return False
    return urllib.request.url2pathname(urllib.parse.urlsplit(url).path) == str(path)


@dataclass(frozen=True)
class Built:
    """A local project's wheel, built this run, and what pip records for the project."""

    local: Local
    wheel: Path
    name: str
    version: str
    source_sha256: str | None  # an sdist's (pip hashes the file it installs from)

    @property
    def wheel_url(self) -> str:
        return self.wheel.as_uri()

    def requirement(self) -> str:
        """The wheel, as pip's dry run gets it in the project's place."""
        return f"{self.name}{self.local.extras} @ {self.wheel_url}"

    def report_info(self, pip_version: Version) -> dict[str, Any]:
        """The ``download_info`` pip's report gives the project."""
        if self.source_sha256 is None:
            return {"dir_info": {}, "url": self.local.url}
        info: dict[str, Any] = {"hash": f"sha256={self.source_sha256}"}
        if pip_version >= _HASHES_RECORDED:
            info["hashes"] = {"sha256": self.source_sha256}
        return {"archive_info": info, "url": self.local.url}

    def direct_url(self, pip_version: Version) -> str:
        """The project's ``direct_url.json``, as that pip writes it (before 23.1 from
        the link, which holds no hash of a local file)."""
        if self.source_sha256 is not None and pip_version < _HASHES_RECORDED:
            return json.dumps({"archive_info": {}, "url": self.local.url}, sort_keys=True)
        return json.dumps(self.report_info(pip_version), sort_keys=True)


@dataclass(frozen=True)
class Builds:
    """This run's local builds: the arguments pip resolves with, and how to put pip's
    record of each project back."""

    built: tuple[Built, ...]
    pip: invoke.PipInvocation  # the user's pip, arguments and environment
    shown: frozenset[bytes] = frozenset()  # first lines the build printed already

    def arguments(self, pip_args: Sequence[str]) -> list[str]:
        """``pip_args`` with each local project replaced by its wheel."""
        args = list(pip_args)
        for built in self.built:
            args[built.local.position] = built.requirement()
        return args

    def hidden(self, line: bytes) -> bool:
        """A dry-run line that would name the wheel instead of the project (pip's
        install prints the project's build instead), or repeat the build's first lines."""
        if any(str(b.wheel.parent).encode() in line for b in self.built):
            return True
        return _KEPT_WHEEL in line or line.rstrip() in self.shown

    def of_url(self, url: str) -> Built | None:
        """The build whose wheel ``url`` (from pip's report) names."""
        return next((b for b in self.built if _is_file(url, b.wheel)), None)

    def complete(self, report_path: Path) -> int:
        """Add the projects pip's dry run kept as installed (same version, a local wheel)
        to its report: pip reinstalls a local project. Their entries come from a dry run
        of the wheel alone, so the report holds pip's own account of them."""
        data = json.loads(report_path.read_text(encoding="utf-8"))
        entries: list[dict[str, Any]] = data.setdefault("install", [])
        listed = {self.of_url(_url(e)) for e in entries}
        kept = [b for b in self.built if b not in listed]
        if not kept:
            return 0
        with tempfile.TemporaryDirectory(prefix="pipfresh-kept-") as tmp:
            extra = Path(tmp, "report.json")
            argv = ["install", "--dry-run", "--no-deps", "--force-reinstall", "-q",
                    *fetch_options(self.pip.args), "--report", str(extra),
                    *(b.requirement() for b in kept)]  # fmt: skip
            with open(Path(tmp, "out.log"), "wb") as out:
                code = self.pip.run(argv, "pip's dry run", stdout=out)
            if code != 0:
                return code
            entries += json.loads(extra.read_text(encoding="utf-8")).get("install") or []
        report_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return 0

    def items(self, items: Sequence[Item]) -> list[Item]:
        """``items`` with each built wheel's ``direct_url.json`` naming its project."""
        out = []
        for item in items:
            built = self.of_url(item.url)
            if built is not None:
                item = replace(item, direct_url=built.direct_url(self.pip.program.version))
            out.append(item)
        return out

    def restore(self, report_path: Path) -> None:
        """The report as pip writes it for the projects (the user's ``--report``, the
        summary's figures): each entry's ``download_info`` names the project again."""
        data = json.loads(report_path.read_text(encoding="utf-8"))
        for entry in data.get("install") or []:
            built = self.of_url(_url(entry))
            if built is not None:
                entry["download_info"] = built.report_info(self.pip.program.version)
        report_path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _url(entry: dict[str, Any]) -> str:
    return str((entry.get("download_info") or {}).get("url", ""))


def build(
    found: Sequence[Local], pip: invoke.PipInvocation, default_build: bool, tmp: Path
) -> tuple[int, Builds]:
    """``pip wheel --no-deps`` of each project, with the options and environment pip's
    install would build it with (``default_build``: no build-affecting option is set).
    Its output is shown once it succeeded (pip's install prints the same build lines);
    a failure shows nothing, for plain pip to say it."""
    built = []
    shown: set[bytes] = set()
    pip_args = pip.args
    options = [*fetch_options(pip_args, BUILD_VALUED, BUILD_FLAGS), *_output_options(pip_args)]
    lines = fetch_options_from_files(pip_args)
    for n, local in enumerate(found):
        out_dir = tmp / str(n)
        argv = ["wheel", "--no-deps", "--wheel-dir", str(out_dir), *options]
        if lines:
            reqs = tmp / f"{n}-options.txt"
            reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
            argv += ["-r", str(reqs)]
        sha256 = None if local.is_dir else fs.sha256(local.path)
        argv += _requirement(local, pip_args[local.position], sha256, default_build)
        with open(tmp / f"{n}.out", "w+b") as out, open(tmp / f"{n}.err", "w+b") as err:
            code = pip.run(argv, "pip wheel", stdout=out, stderr=err)
            wheels = list(out_dir.glob("*.whl")) if code == 0 else []
            if len(wheels) != 1:
                return code or 1, Builds((), pip)
            shown |= _replay(pip.console, out, err, hide=str(out_dir).encode())
        try:
            name, version, _build, _tags = parse_wheel_filename(wheels[0].name)
        except InvalidWheelFilename:
            return 1, Builds((), pip)
        built.append(Built(local, wheels[0], str(canonicalize_name(name)), str(version), sha256))
    return 0, Builds(tuple(built), pip, frozenset(shown))


def _requirement(local: Local, token: str, sha256: str | None, default_build: bool) -> list[str]:
    """What ``pip wheel`` builds: the user's own argument, read as pip reads it; for an
    sdist built without build options, ``name @ file:...#sha256=...``, which pip's wheel
    cache keys by content (a wheel built from the same bytes is reused, as for an sdist
    from an index: obtain). Its cache ignores build options: with them, it is not used."""
    if sha256 is None:
        return [token]
    if not default_build:
        return ["--no-cache-dir", token]
    try:
        name, _version = parse_sdist_filename(Path(local.path).name)
    except InvalidSdistFilename:
        return [token]
    return [f"{name} @ {local.url}#sha256={sha256}"]


def _replay(console: Console, out: BinaryIO, err: BinaryIO, hide: bytes) -> set[bytes]:
    """Show a build's output (but lines naming ``hide``); return its first lines."""
    shown = set()
    out.seek(0)
    kept = []
    for line in out:
        if hide not in line:
            kept.append(line)
        if line.startswith(_FIRST_LINES):
            shown.add(line.rstrip())
    console.relay(b"".join(kept))
    err.seek(0)
    console.relay(err.read(), err=True)
    return shown


def _output_options(args: Sequence[str]) -> list[str]:
    """``-q``/``-v`` as given: pip's install prints the build's lines at that verbosity."""
    return [t for t in args if t in ("--quiet", "--verbose") or _VERBOSITY.match(t)]
