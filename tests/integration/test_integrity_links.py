"""A symlink planted at any level of a genuine cache root is never followed (issue 10, #2).

A CI cache archive can carry a link where pipfresh keeps a directory of its own
(``partitions-v1``, a partition, ``locks-v1``, the store...). Followed, it would make
pipfresh read, write and delete in the link's target. For every level, the directory
of a real, used root is replaced by a link to a victim directory beside the root
(the original content plus subdirectories, ``*.tmp`` files and other files); then
every command runs. The victim's listing (names, types, sizes, mtimes) must not
change, and pipfresh says so in one line: the cache commands refuse (exit 2), an
install runs pip without the cache, as pip itself does with a cache directory it
cannot use (pip's "The cache has been disabled"), and installs.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import MakeVenv, pip_wheel
from helpers import Run, index_args, installed_version, pipfresh
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex

PARTITION = "<id>"  # replaced by the partition's id
STORE_ENTRY = "<entry>"  # replaced by the first store entry's name

#: Every directory pipfresh (or pip, through it) reads, writes or deletes under the root;
#: the lock file is a file, the rest are directories.
LEVELS = {
    "partitions-v1": "partitions-v1",
    "partition": f"partitions-v1/{PARTITION}",
    "pip": f"partitions-v1/{PARTITION}/pip",
    "pipfresh": f"partitions-v1/{PARTITION}/pipfresh",
    "locks-v1": "locks-v1",
    "lock-file": f"locks-v1/{PARTITION}.lock",
    "probes-v1": "probes-v1",
    "store": f"partitions-v1/{PARTITION}/pipfresh/store-v1",
    "store-entry": f"partitions-v1/{PARTITION}/pipfresh/store-v1/{STORE_ENTRY}",
    "resolutions": f"partitions-v1/{PARTITION}/pipfresh/resolutions-v1",
    "http-v2": f"partitions-v1/{PARTITION}/pip/http-v2",
    "http": f"partitions-v1/{PARTITION}/pip/http",
    "wheels": f"partitions-v1/{PARTITION}/pip/wheels",
    "selfcheck": f"partitions-v1/{PARTITION}/pip/selfcheck",
}

COMMANDS = {
    "install": ["install"],
    "prune-all-ci": ["cache", "prune", "--all", "--mode", "ci"],
    "prune-all": ["cache", "prune", "--all"],
    "purge-all": ["cache", "purge", "--all"],
    "purge": ["cache", "purge"],
    "info-all": ["cache", "info", "--all"],
}


def _clean_env(root: Path, home: Path) -> dict[str, str]:
    """What the autouse isolation gives a test, for a fixture that outlives one test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PIPFRESH_"))
        and k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIPFRESH_CACHE_DIR=str(root),
        XDG_CACHE_HOME=str(home),
    )
    return env


@dataclass(frozen=True)
class Template:
    """A root after a real install (pip 26.3, the store installer), and its index."""

    root: Path
    partition: str
    store_entry: str
    index: PackageIndex


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    base = tmp_path_factory.mktemp("links-template")
    dists = base / "dists"
    dists.mkdir()
    index = PackageIndex(base / "index-files")
    from conftest import flit_core_wheel

    index.publish(
        flit_core_wheel(),
        build_wheel(dists, "alpha", "1.0"),
        build_sdist(dists, "beta", "0.1"),  # built once: pip's wheels/ holds it
    )
    index.start()
    try:
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        wheel = pip_wheel("26.3")
        offline = ["-q", "--no-index", "--no-cache-dir", "--no-compile"]
        pip_args = ["install", *offline, "--disable-pip-version-check", wheel]
        subprocess.run([venv / "bin" / "python", f"{wheel}/pip", *pip_args], check=True)
        root = base / "root"
        env = _clean_env(root, base / "xdg")
        argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv)]
        subprocess.run([*argv, *index_args(index), "alpha", "beta"], env=env, check=True)
        (partition,) = os.listdir(root / "partitions-v1")
        store = root / "partitions-v1" / partition / "pipfresh" / "store-v1"
        entry = sorted(n for n in os.listdir(store) if not n.startswith("."))[0]
        for made in ("http-v2", "wheels"):  # what pip wrote: the levels are real ones
            assert (root / "partitions-v1" / partition / "pip" / made).is_dir()
        assert (root / "partitions-v1" / partition / "pipfresh" / "resolutions-v1").is_dir()
        yield Template(root, partition, entry, index)
    finally:
        index.stop()


def listing(top: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under ``top`` and ``top`` itself: type, size, mtime, link target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [".", *dirnames, *filenames] if dirpath == str(top) else dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.normpath(os.path.relpath(path, top))
            found[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, target)
    return found


def plant(root: Path, rel: str, victim: Path) -> Path:
    """Replace ``root/rel`` by a link to ``victim``: its content moves into the victim,
    with things a deletion or a write would show. Returns the link."""
    link = root / rel
    if rel.endswith(".lock"):  # a file: the link points at a name in the victim
        victim.mkdir()
        (victim / "keep.txt").write_text("mine\n")
        link.unlink(missing_ok=True)
        link.symlink_to(victim / "created-by-pipfresh.lock")
        return link
    if link.exists():
        shutil.move(str(link), str(victim))
    else:
        link.parent.mkdir(parents=True, exist_ok=True)
        victim.mkdir()
    (victim / "projectA" / "build").mkdir(parents=True)
    (victim / "projectA" / "main.py").write_text("print('hello')\n")
    (victim / "projectA" / "build" / "object.tmp").write_text("not a cache leftover\n")
    (victim / "notes.tmp").write_text("precious\n")
    (victim / "data.txt").write_text("data\n")
    (victim / "empty").mkdir()
    link.symlink_to(victim)
    return link


def pipfresh_lines(run: Run) -> list[str]:
    """pipfresh's own warnings and errors (the summary line and pip's output aside)."""
    return [
        line
        for line in run.stderr.splitlines()
        if line.startswith(("pipfresh: warning:", "pipfresh: error:"))
    ]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("level", list(LEVELS))
def test_a_link_at_any_level_is_refused_and_its_target_is_untouched(
    template: Template, level: str, command: str, tmp_path: Path, make_venv: MakeVenv
) -> None:
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    shutil.copytree(template.root, root, symlinks=True)
    rel = LEVELS[level].replace(PARTITION, template.partition)
    link = plant(root, rel.replace(STORE_ENTRY, template.store_entry), tmp_path / "victim")
    before = listing(tmp_path / "victim")

    if command == "install":
        venv = make_venv()
        run = pipfresh("install", "--python", venv.python, *index_args(template.index), "alpha")
        # As pip with a cache directory it cannot use: the install goes on without it.
        assert run.code == 0, run
        assert installed_version(venv.python, "alpha") == "1.0"
        (line,) = pipfresh_lines(run)
        assert line.startswith(f"pipfresh: warning: refusing to use {link}: "), line
        assert line.endswith("; pip runs without a cache"), line
    else:
        run = pipfresh(*COMMANDS[command])
        assert run.code == 2, run
        assert run.stdout == ""
        (line,) = run.stderr.splitlines()
        assert line.startswith(f"pipfresh: error: refusing to use {link}: "), line
    assert "symlink" in line, line
    assert listing(tmp_path / "victim") == before
    assert os.path.islink(link)  # refused, not "repaired" by deleting the user's link


def test_a_linked_sibling_partition_is_left_alone_and_all_refuses(
    template: Template, tmp_path: Path, make_venv: MakeVenv
) -> None:
    """Another partition that is a link: an install and single-partition commands go on
    (nothing reads the link: hardlink sharing skips it), ``--all`` refuses before it
    deletes anything, in any partition."""
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    shutil.copytree(template.root, root, symlinks=True)
    sibling = template.root / "partitions-v1" / template.partition
    shutil.copytree(sibling, tmp_path / "victim", symlinks=True)  # looks like a partition
    (tmp_path / "victim" / "pip" / "left.tmp").write_text("precious\n")
    link = root / "partitions-v1" / "cp399-cp399-manylinux_2_99_x86_64"
    link.symlink_to(tmp_path / "victim")
    before = listing(tmp_path / "victim")

    venv = make_venv()
    run = pipfresh("install", "--python", venv.python, *index_args(template.index), "alpha").ok()
    assert pipfresh_lines(run) == []
    assert installed_version(venv.python, "alpha") == "1.0"
    for args in (["prune", "--all"], ["purge", "--all"], ["info", "--all"]):
        refused = pipfresh("cache", *args)
        assert refused.code == 2, (args, refused)
        (line,) = refused.stderr.splitlines()
        assert line.startswith(f"pipfresh: error: refusing to use {link}: "), line
    own = root / "partitions-v1" / template.partition
    assert (own / "pipfresh" / "store-v1").is_dir()  # purge --all deleted nothing at all
    pipfresh("cache", "prune", "--mode", "ci").ok()
    pipfresh("cache", "purge").ok()
    assert not own.exists()
    assert listing(tmp_path / "victim") == before
    assert link.is_symlink()
