"""The first warm install after a CI restore that rounds or drops mtimes (or inodes).

``python -m benchmarks.restore_mtimes --wheels DIR REQUIREMENT...`` serves the
wheels of DIR on the loopback index, fills a cache root with one install, then
for each archiver archives the root, deletes it, restores it, and times an
install into a fresh venv (``--src`` runs another checkout's pipfresh, e.g. the
one before entries were re-verified by hash: ``git archive`` its ``src``).
Also timed: a warm install (nothing restored) and one after the venv holding
links to every entry was deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from pipfresh.testing.index import PackageIndex


def _tar(args: list[str]) -> Callable[[Path, Path], None]:
    def archive(root: Path, archive_dir: Path) -> None:
        target = archive_dir / "cache.tar"
        subprocess.run(["tar", *args, "-cf", target, "-C", root.parent, root.name], check=True)
        shutil.rmtree(root)
        subprocess.run(["tar", "-xf", target, "-C", root.parent], check=True)

    return archive


def _tarfile(root: Path, archive_dir: Path) -> None:
    target = archive_dir / "cache.tar"
    with tarfile.open(target, "w") as tf:
        tf.add(root, arcname=root.name)
    shutil.rmtree(root)
    with tarfile.open(target) as tf:
        if hasattr(tarfile, "fully_trusted_filter"):
            tf.extractall(root.parent, filter="fully_trusted")
        else:  # pragma: no cover - before 3.12
            tf.extractall(root.parent)


def _zip(root: Path, archive_dir: Path) -> None:
    target = archive_dir / "cache.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                full = Path(dirpath, name)
                zf.write(full, full.relative_to(root.parent).as_posix())
    shutil.rmtree(root)
    with zipfile.ZipFile(target) as zf:
        zf.extractall(root.parent)


def _cp(root: Path, archive_dir: Path) -> None:
    copy = archive_dir / "copy"
    subprocess.run(["cp", "-r", root, copy], check=True)
    shutil.rmtree(root)
    subprocess.run(["cp", "-r", copy, root], check=True)
    shutil.rmtree(copy)


ARCHIVERS: dict[str, Callable[[Path, Path], None]] = {
    "tar": _tar([]),
    "tar --posix": _tar(["--posix"]),
    "tarfile": _tarfile,
    "zip": _zip,
    "cp -r": _cp,
}


class Bench:
    def __init__(self, work: Path, index: PackageIndex, reqs: list[str], src: str | None) -> None:
        self.work, self.index, self.reqs, self.src = work, index, reqs, src
        self.root = work / "cache"
        self.venvs = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PIPFRESH_"))}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        env["PIPFRESH_CACHE_DIR"] = str(self.root)
        if self.src:
            env["PYTHONPATH"] = self.src
        return env

    def venv(self) -> Path:
        self.venvs += 1
        path = self.work / f"venv{self.venvs}"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
        return path

    def install(self, venv: Path) -> tuple[float, str]:
        summary = self.work / "summary.json"
        argv = [sys.executable, "-m", "pipfresh", "install", "-q", "--python", str(venv)]
        argv += ["--index-url", self.index.index_url, "--trusted-host", self.index.host]
        argv += [*self.reqs, "--summary-json", str(summary)]
        started = time.monotonic()
        subprocess.run(argv, check=True, env=self.env())
        elapsed = time.monotonic() - started
        reason = json.loads(summary.read_text())["installer_reason"]
        return elapsed, reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--src", help="PYTHONPATH of the pipfresh to run (default: this one)")
    parser.add_argument("--only", nargs="*", default=list(ARCHIVERS))
    parser.add_argument("requirements", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipfresh-restore-") as tmp:
        work = Path(tmp)
        index = PackageIndex(work / "index")
        index.publish(*sorted(args.wheels.glob("*.whl")))
        with index:
            bench = Bench(work, index, args.requirements, args.src)
            cold, reason = bench.install(bench.venv())
            print(f"cold                {cold:6.1f} s  {reason}")
            linked = bench.venv()
            warm, reason = bench.install(linked)
            print(f"warm                {warm:6.1f} s  {reason}")
            shutil.rmtree(linked)
            gone, reason = bench.install(bench.venv())
            print(f"warm, venv deleted  {gone:6.1f} s  {reason}")
            kept = work / "kept"
            subprocess.run(["cp", "-a", bench.root, kept], check=True)
            for name in args.only:
                archive_dir = work / "archive"
                archive_dir.mkdir()
                ARCHIVERS[name](bench.root, archive_dir)
                shutil.rmtree(archive_dir)
                first, reason = bench.install(bench.venv())
                second, again = bench.install(bench.venv())
                print(f"{name:<20}{first:6.1f} s  {reason}  (next: {second:.1f} s, {again})")
                shutil.rmtree(bench.root)
                subprocess.run(["cp", "-a", kept, bench.root], check=True)


if __name__ == "__main__":
    main()
