"""The ABI fingerprint of an interpreter, and the versioned on-disk layout.

A partition holds everything valid for one interpreter ABI: pip's cache, and
pipfresh's own records of it. Its id is readable and safe in a path and in any
CI cache key, e.g. ``cp312-cp312-manylinux_2_36_x86_64``.

Layout (every bucket carries its format version, so a layout change never
misreads an old cache and old buckets are recognisable)::

    <root>/.pipfresh-root            marker: proves the directory is ours
    <root>/CACHEDIR.TAG              backup tools skip the cache
    <root>/probes-v1/                cached interpreter probes
    <root>/partitions-v1/<id>/pip/   pip's cache (PIP_CACHE_DIR)
    <root>/partitions-v1/<id>/pipfresh/  pipfresh's state for the partition
    <root>/locks-v1/<id>.lock        outside the partition, so a purge can remove it whole

No link inside the root is followed: every directory of this layout is checked
from the root down before it is read, written or deleted (``CacheRoot.check``,
``Partition.check``), and a link there is refused, not removed. The root itself
may be a link to a real directory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipfresh.cache import fs
from pipfresh.errors import CacheNotWritable, CacheRootError

if TYPE_CHECKING:
    from pipfresh.target.interpreter import Facts

# Every on-disk name and format version pipfresh uses, in one place (like uv's
# ``CacheBucket``): a bucket's version is in its name, so a format change starts a
# new bucket and never misreads an old one.
LAYOUT_VERSION = 1
MARKER = ".pipfresh-root"
PROBE_LAYOUT = "probes-v1"  # in the root: cached interpreter probes (target/interpreter)
PARTITIONS = f"partitions-v{LAYOUT_VERSION}"
LOCKS = "locks-v1"
PIP_DIR = "pip"  # in a partition: pip's cache (PIP_CACHE_DIR)
STATE_DIR = "pipfresh"  # in a partition: pipfresh's own records
INFO_FILE = "partition.json"  # in ``pipfresh/``: who used the partition last
RESOLUTIONS = "resolutions-v1"  # in ``pipfresh/``: saved resolutions (resolve/reuse)
STORE_LAYOUT = "store-v1"  # in ``pipfresh/``: installed-wheel store (store/entries)
MANIFEST = "manifest.json"  # in a store entry
FINGERPRINT = "fingerprint-v1.json"  # in a store entry
LINKED = "linked-v1.json"  # in a store entry: when an install last linked it (store/verify)
PLAN_FILE = "plan-v2.json"  # in a store entry; v2: made only after ``wheelcheck`` passed it
USAGE_FILE = "usage-v1.json"  # in ``pipfresh/``: which runs used which entries (cache/usage)
VERIFIED = "verified-v1.json"  # in ``pipfresh/``: entries health checked (cache/health)
DROPPED_LOG = "dropped-v1.jsonl"  # in ``pipfresh/``: entries health dropped
# pip's own buckets, inside ``<id>/pip/``.
HTTP = "http"  # pip < 23.3's HTTP cache (legacy format)
HTTP_V2 = "http-v2"  # pip >= 23.3's HTTP cache
WHEELS = "wheels"  # wheels pip built from sdists
SELFCHECK = "selfcheck"
PIP_DIRS = (HTTP_V2, HTTP, WHEELS, SELFCHECK)
WATCHED = (HTTP, HTTP_V2, WHEELS)  # what a run can add or change (snapshot)
STATE_DIRS = WATCHED  # what decides what a run can reuse (ci)
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pipfresh.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)
_UNSAFE = re.compile(r"[^A-Za-z0-9._]+")
_IMPL_PREFIX = {"cpython": "cp", "pypy": "pp", "graalpy": "graalpy", "ironpython": "ip"}


def partition_id(facts: Facts) -> str:
    """``<interpreter>-<abi>-<platform>``, the wheel-tag shape, one per ABI.

    Final releases of one minor version share an ABI, so 3.12.1 and 3.12.7 share a
    partition. A pre-release's ABI is not stable: its id carries its release and a
    hash of its full build string.
    """
    major, minor, micro, level, serial = facts.version_info
    prefix = _IMPL_PREFIX.get(facts.implementation, _clean(facts.implementation))
    interp = f"{prefix}{major}{minor}"
    if level != "final":
        build = hashlib.sha256(facts.version.encode()).hexdigest()[:8]
        interp += f"_{micro}{level[0] if level != 'candidate' else 'rc'}{serial}_{build}"
    return f"{interp}-{abi_tag(facts)}-{platform_tag(facts)}"


def abi_tag(facts: Facts) -> str:
    """The ABI part: free-threaded (``t``) and debug (``d``) builds differ."""
    major, minor = facts.version_info[:2]
    if facts.implementation == "cpython":
        flags = ""
        if facts.debug:
            flags += "d"
        if (major, minor) < (3, 8) and "m" in facts.abiflags:
            flags += "m"
        if facts.gil_disabled:
            flags += "t"
        return f"cp{major}{minor}{flags}"
    if facts.soabi:
        return _clean(facts.soabi.replace("-", "_"))
    if facts.ext_suffix:
        return _clean(facts.ext_suffix.strip(".").rsplit(".", 1)[0].replace("-", "_"))
    return "none"


def platform_tag(facts: Facts) -> str:
    """Platform, libc and arch: ``manylinux_2_36_x86_64``, ``musllinux_1_2_aarch64``..."""
    plat = facts.sysconfig_platform.replace("-", "_").replace(".", "_")
    if facts.sys_platform.startswith("linux"):
        arch = plat.split("_", 1)[1] if "_" in plat else facts.machine
        if facts.pointer_bits == 32:
            arch = {"x86_64": "i686", "aarch64": "armv8l"}.get(arch, arch)
        version = (facts.libc_version or "").split(".")
        if facts.libc in ("glibc", "musl") and len(version) >= 2:
            family = "manylinux" if facts.libc == "glibc" else "musllinux"
            return _clean(f"{family}_{version[0]}_{version[1]}_{arch}")
        return _clean(f"linux_{arch}")
    if plat.startswith("macosx") and plat.endswith("universal2"):
        plat = plat[: -len("universal2")] + facts.machine
    return _clean(plat)


def _clean(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_").lower() or "unknown"


def default_root(environ: Mapping[str, str]) -> Path:
    """``PIPFRESH_CACHE_DIR``, else the platform's user cache directory."""
    configured = environ.get("PIPFRESH_CACHE_DIR")
    if configured:
        return Path(os.path.abspath(os.path.expanduser(configured)))
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pipfresh", appauthor=False))


@dataclass(frozen=True)
class CacheRoot:
    """The directory that holds every partition. Only a marked root is ever pruned."""

    path: Path

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def probes(self) -> Path:
        return self.path / PROBE_LAYOUT

    @property
    def partitions_dir(self) -> Path:
        return self.path / PARTITIONS

    @property
    def locks_dir(self) -> Path:
        return self.path / LOCKS

    def is_marked(self) -> bool:
        return self.marker.is_file() and not self.marker.is_symlink()

    def ensure(self) -> CacheRoot:
        """Create the root if needed; refuse one that is not a directory or not ours."""
        path = self.path
        if path.is_symlink():
            # A link is fine when it points at a real, marked (or new) directory.
            target = Path(os.path.realpath(path))
            if not target.is_dir():
                raise CacheRootError(f"cache root {path} is a link to {target}, not a directory")
        if path.exists() and not path.is_dir():
            raise CacheRootError(f"cache root {path} exists and is not a directory")
        if path.is_dir() and not self.is_marked() and any(path.iterdir()):
            raise CacheRootError(
                f"cache root {path} is a non-empty directory pipfresh did not create "
                f"(no {MARKER}); set PIPFRESH_CACHE_DIR to an empty or new directory"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not self.is_marked():
                self.marker.write_text("pipfresh cache root; safe to delete\n", encoding="utf-8")
                (path / "CACHEDIR.TAG").write_text(CACHEDIR_TAG, encoding="utf-8")
        except OSError as exc:
            error = CacheNotWritable if exc.errno in _NO_ACCESS else CacheRootError
            raise error(f"cannot use cache root {path}: {exc.strerror or exc}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise CacheNotWritable(_not_writable("cache root", path, path))
        return self.check()

    def check(self) -> CacheRoot:
        """Refuse (``LinkInCache``) a root whose own directories are links or files."""
        fs.require_real_dirs(self.path, self.probes, self.partitions_dir, self.locks_dir)
        return self

    def require_marked(self) -> None:
        """Deleting is allowed only inside a root that pipfresh created."""
        if self.path.is_symlink():
            raise CacheRootError(f"refusing to delete through a symlink: {self.path}")
        if not self.path.is_dir():
            raise CacheRootError(f"cache root {self.path} is not a directory")
        if not self.is_marked():
            raise CacheRootError(
                f"refusing to delete in {self.path}: not a pipfresh cache root (no {MARKER})"
            )
        self.check()

    def partition(self, pid: str) -> Partition:
        return Partition(self, pid)

    def partition_ids(self) -> list[str]:
        """The names in ``partitions-v1/`` that are partitions, or links posing as one."""
        self.check()
        try:
            with os.scandir(self.partitions_dir) as entries:
                return sorted(
                    e.name for e in entries if e.is_dir(follow_symlinks=False) or e.is_symlink()
                )
        except OSError:
            return []

    def partitions(self) -> list[Partition]:
        """Every partition, each checked: a link among them is refused, not skipped, so a
        command on all of them changes nothing until every one is sound."""
        return [self.partition(pid).check() for pid in self.partition_ids()]


@dataclass(frozen=True)
class Partition:
    """One ABI's self-contained cache directory: all a CI job saves and restores."""

    root: CacheRoot
    id: str

    @property
    def path(self) -> Path:
        return self.root.partitions_dir / self.id

    @property
    def pip_cache(self) -> Path:
        return self.path / PIP_DIR

    @property
    def state_dir(self) -> Path:
        return self.path / STATE_DIR

    @property
    def lock_file(self) -> Path:
        return self.root.locks_dir / f"{self.id}.lock"

    @property
    def info_file(self) -> Path:
        return self.state_dir / INFO_FILE

    def check(self) -> Partition:
        """Refuse (``LinkInCache``) a partition in which pipfresh or pip would follow a link.

        Every directory either reads, writes or deletes in, from the root down: the
        partition, ``pip/`` and pip's buckets, ``pipfresh/``, the store and each of its
        entries, saved resolutions, the lock's directory and the lock file. About twenty
        ``lstat`` calls and one listing of the store: cheap enough for every run.
        """
        store = self.state_dir / STORE_LAYOUT
        self.root.check()
        fs.require_real_dirs(
            self.root.path,
            *(self.pip_cache / name for name in PIP_DIRS),
            store,
            self.state_dir / RESOLUTIONS,
        )
        fs.require_no_links_in(store)
        fs.require_file(self.lock_file)
        return self

    def ensure(self) -> Partition:
        self.check()
        try:
            self.pip_cache.mkdir(parents=True, exist_ok=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = CacheNotWritable if exc.errno in _NO_ACCESS else CacheRootError
            raise error(f"cannot create partition {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.pip_cache, os.W_OK | os.X_OK):
            raise CacheNotWritable(_not_writable("partition", self.pip_cache, self.root.path))
        return self

    def read_info(self) -> dict[str, Any]:
        try:
            data = json.loads(fs.read_text(self.info_file))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record_use(self, facts: Facts, pip_version: str, installer: str = "pip") -> None:
        """Remember who used the partition last, and how it installed (``store`` or plain
        ``pip``): ``info`` shows it, ``prune`` relies on it."""
        info = self.read_info()
        info.update(
            {
                "id": self.id,
                "layout": LAYOUT_VERSION,
                "implementation": facts.implementation,
                "python": facts.short_version,
                "version": facts.version,
                "pip_version": pip_version,
                "installer": installer,
                "last_used": time.time(),
            }
        )
        write_json(self.info_file, info)


def _not_writable(what: str, path: Path, root: Path) -> str:
    """Whose it is and the command that gives it back: the usual cause is a restore as root."""
    try:
        owner = path.stat().st_uid
    except OSError:
        return f"{what} {path} is not writable by this user"
    me = os.geteuid() if hasattr(os, "geteuid") else owner
    if owner == me:
        return f"{what} {path} is not writable (read-only file system or permissions)"
    return (
        f"{what} {path} belongs to uid {owner} and is not writable by uid {me} "
        f"(fix: chown -R {me} {root})"
    )


def write_json(path: Path, data: object) -> None:
    """Write atomically: a reader never sees half a file, and no link is followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.write_atomic(path, json.dumps(data, indent=1, sort_keys=True))
