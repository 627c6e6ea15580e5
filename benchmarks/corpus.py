"""Download the benchmark corpus from PyPI once: ``python -m benchmarks.corpus``.

Everything the workload needs on CPython 3.10-3.13 manylinux x86_64 lands in
one flat directory (``benchmarks/corpus/dists``, gitignored) that the harness
serves on 127.0.0.1; the pip wheel the contenders run goes to ``tools/``.
This is the only part of the benchmarks that talks to PyPI, and it ignores
this machine's pip configuration.

Markers (``tomli; python_version < "3.11"``) are evaluated by the interpreter
pip runs under, so each version is resolved by that version's interpreter
(``pip --python``) when one is installed, and by ours otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .pythons import find_python

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "corpus"
WORKLOAD = HERE / "workload.txt"
CONSTRAINTS = HERE / "constraints.txt"
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
# pip does not expand manylinux_2_28 to older glibc tags by itself.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
SDISTS = ("docopt==0.6.2",)
BUILD_REQUIREMENTS = ("setuptools==80.9.0",)
PIP_WHEEL = "pip==26.3"


def clean_env() -> dict[str, str]:
    """Our environment without pip/uv configuration, and pip told to read no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _pip(*args: str | Path, python: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "pip"]
    if python is not None:
        cmd += ["--python", str(python)]
    return [*cmd, *map(str, args)]


def _requirements(dest: Path) -> Path:
    """The workload without what is not on PyPI (the generated probe) or not a wheel."""
    lines = []
    skip = {"fresh-probe", *(s.split("==")[0] for s in SDISTS)}
    for line in WORKLOAD.read_text().splitlines():
        name = line.split("#")[0].strip().split("==")[0].strip()
        if name and name not in skip:
            lines.append(line.strip())
    path = dest / "workload-wheels.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def download_commands(dest: Path, versions: Sequence[str]) -> list[list[str]]:
    """One ``pip download`` per Python version, plus the sdist, its builder and pip itself."""
    staging = dest / "staging"
    reqs = _requirements(dest)
    common = ["--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS), "--implementation=cp"]
    cmds = []
    for version in versions:
        nodot = version.replace(".", "")
        cmds.append(
            _pip(
                "download",
                "--quiet",
                f"--dest={staging / version}",
                *common,
                f"--python-version={version}",
                f"--abi=cp{nodot}",
                f"--requirement={reqs}",
                f"--constraint={CONSTRAINTS}",
                python=find_python(version),
            )
        )
    cmds.append(
        _pip(
            "download",
            "--quiet",
            f"--dest={staging / 'sdist'}",
            "--no-deps",
            "--no-binary=:all:",
            *SDISTS,
        )
    )
    cmds.append(
        _pip(
            "download",
            "--quiet",
            f"--dest={staging / 'build'}",
            "--no-deps",
            "--only-binary=:all:",
            *BUILD_REQUIREMENTS,
        )
    )
    cmds.append(
        _pip(
            "download",
            "--quiet",
            f"--dest={dest / 'tools'}",
            "--no-deps",
            "--only-binary=:all:",
            PIP_WHEEL,
        )
    )
    return cmds


def download(dest: Path = DEFAULT_DIR, versions: Sequence[str] = PYTHON_VERSIONS) -> Path:
    """Fill ``dest/dists`` (and ``dest/tools``); returns the dists directory."""
    dest.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    cmds = download_commands(dest, versions)
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(
            pool.map(lambda c: subprocess.run(c, env=env, capture_output=True, text=True), cmds)
        )
    failed = [p for p in procs if p.returncode != 0]
    if failed:
        detail = "\n".join(f"$ {' '.join(p.args)}\n{p.stdout}{p.stderr}" for p in failed)
        raise SystemExit(f"download failed:\n{detail}")
    dists = dest / "dists"
    dists.mkdir(exist_ok=True)
    for path in sorted((dest / "staging").glob("*/*")):
        target = dists / path.name
        if not target.exists():
            shutil.copy2(path, target)
    shutil.rmtree(dest / "staging")
    return dists


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DIR, help="corpus directory")
    parser.add_argument("--python-version", action="append", dest="versions", help="X.Y (repeat)")
    args = parser.parse_args(argv)
    dists = download(args.dest, args.versions or PYTHON_VERSIONS)
    files = sorted(dists.iterdir())
    size = sum(f.stat().st_size for f in files)
    projects = {f.name.split("-")[0].lower() for f in files}
    print(f"{dists}: {len(files)} files, {len(projects)} projects, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
