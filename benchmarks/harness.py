"""The parts every benchmark is made of: a served corpus, fresh venvs, contenders, one measured run.

Everything runs against pipfresh's own loopback index (``pipfresh.testing``),
so what a contender downloads is counted by the server, request by request,
and nothing leaves 127.0.0.1: pip and uv get no configuration file, no
``PIP_*``/``UV_*`` variables from this shell, and no proxy.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zstandard

from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

PROBE = "fresh-probe"
PROBE_OLD, PROBE_NEW = "1.0", "1.1"

_LEAKY = ("PIP_", "UV_", "PIPFRESH_", "VIRTUAL_ENV", "CONDA_", "PYTHONPATH", "PYTHONHOME")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


# -- the served corpus -----------------------------------------------------------------


@dataclass
class Served:
    """A running index over a copy of the corpus, with the freshness probe."""

    index: PackageIndex
    probe_dir: Path

    @property
    def url(self) -> str:
        return self.index.index_url

    def publish_new_probe(self) -> None:
        self.index.publish(self.probe_dir / _probe_filename(PROBE_NEW))

    def unpublish_new_probe(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.index.unpublish(_probe_filename(PROBE_NEW))

    def newest_probe(self) -> str:
        names = {d.filename for d in self.index.files().get(PROBE, [])}
        return PROBE_NEW if _probe_filename(PROBE_NEW) in names else PROBE_OLD


def _probe_filename(version: str) -> str:
    return f"{PROBE.replace('-', '_')}-{version}-py3-none-any.whl"


@contextlib.contextmanager
def serve(
    dists: Path,
    work: Path,
    *,
    latency: float = 0.020,
    bandwidth: float | None = None,
    max_age: int = 600,
) -> Iterator[Served]:
    """Serve ``dists`` (hardlinked, so the corpus is never touched) plus probe 1.0."""
    root = work / "index"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for path in sorted(dists.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            try:
                os.link(path, root / path.name)
            except OSError:
                shutil.copy2(path, root / path.name)
    probe_dir = work / "probe"
    for version in (PROBE_OLD, PROBE_NEW):
        build_wheel(probe_dir, PROBE, version)
    index = PackageIndex(root, latency=latency, bandwidth=bandwidth, page_max_age=max_age)
    index.publish(probe_dir / _probe_filename(PROBE_OLD))
    index.files()  # hash the corpus now, not inside the first measured run
    with index:
        yield Served(index, probe_dir)


# -- saved caches and venv templates: copied cheaply, checked after each run ----------


class SnapshotChanged(RuntimeError):
    """A run changed a saved cache through a hardlink: its copies must be real ones."""


def _stamps(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Each file under ``root`` (relative path) and its inode, size, mtime and mode."""
    stamps = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            stamps[os.path.relpath(path, root)] = (
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_mode,
            )
    return stamps


class Snapshot:
    """A saved cache that measured runs start from, copied cheaply and checked after each.

    The top-level entries that match the contender's :attr:`Contender.linked`
    are copied as hardlinks (uv's unpacked wheels alone are 17,000 files: a real
    copy and its removal took longer than uv's run), the rest file by file.
    :meth:`check` proves a run did not rewrite a linked file in place, which
    would have changed the snapshot for every later run.
    """

    def __init__(self, path: Path, linked: Sequence[str]) -> None:
        self.path = path
        self.linked = tuple(linked)
        self._stamps = _stamps(path)

    def copy(self, dest: Path) -> Path:
        """A private copy at ``dest`` (timestamps kept)."""
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        entries = sorted(self.path.iterdir())
        linked = [str(e) for e in entries if any(fnmatch.fnmatch(e.name, g) for g in self.linked)]
        copied = [str(e) for e in entries if str(e) not in linked]
        if linked:
            run_checked(["cp", "-al", *linked, str(dest)])
        if copied:
            run_checked(["cp", "-a", *copied, str(dest)])
        shutil.copystat(self.path, dest)
        return dest

    def check(self, who: str) -> None:
        """Raise :class:`SnapshotChanged` if a file of the snapshot changed since it was made."""
        now = _stamps(self.path)
        changed = sorted(
            k for k in self._stamps.keys() | now.keys() if self._stamps.get(k) != now.get(k)
        )
        if changed:
            raise SnapshotChanged(
                f"{who} changed {len(changed)} file(s) of the saved cache {self.path} "
                f"(e.g. {changed[0]}): make its copies real (Contender.linked)"
            )


# -- fresh virtual environments ------------------------------------------------------


class Venvs:
    """Fresh venvs with pip, hardlinked from one template per Python (made once, off the clock).

    A run only adds files to its venv (pip is not part of the workload), so a
    hardlinked copy is as good as a real one and costs a tenth; :meth:`check`
    proves after each run that the template is unchanged.
    """

    def __init__(self, work: Path, pip_wheel: Path) -> None:
        self.work = work
        self.pip_wheel = pip_wheel
        self._templates: dict[Path, Snapshot] = {}
        self._count = 0

    def template(self, python: Path) -> Snapshot:
        if python not in self._templates:
            path = self.work / "templates" / f"venv-{len(self._templates)}"
            shutil.rmtree(path, ignore_errors=True)
            run_checked([str(python), "-m", "venv", "--without-pip", str(path)])
            wheel = str(self.pip_wheel)
            install = ["install", "--no-index", "--no-deps", "--no-cache-dir", wheel]
            run_checked(
                [str(path / "bin" / "python"), f"{wheel}/pip", *install], env=base_env(self.work)
            )
            self._templates[python] = Snapshot(path, ["*"])
        return self._templates[python]

    def fresh(self, python: Path) -> Path:
        """A new venv directory (its interpreter is ``<venv>/bin/python``)."""
        self._count += 1
        return self.template(python).copy(self.work / "venvs" / f"venv-{self._count}")

    def check(self, python: Path, who: str) -> None:
        """Raise :class:`SnapshotChanged` if a run changed the template through a link."""
        self.template(python).check(who)


# -- environments and processes ------------------------------------------------------


def base_env(work: Path) -> dict[str, str]:
    """This process's environment minus everything that configures pip or uv, plus isolation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY) and k not in _PROXIES}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        NO_PROXY="*",
        no_proxy="*",
        XDG_CACHE_HOME=str(work / "xdg-cache"),  # nothing falls back to ~/.cache
    )
    return env


def run_checked(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def uv_binary() -> str:
    """The ``uv`` installed next to this interpreter (the ``bench`` extra), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise RuntimeError("uv is not installed: pip install -e '.[bench]'")
    return found


# -- contenders ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What one run needs: the target venv, the contender's cache and the index."""

    venv: Path
    cache: Path
    index_url: str
    requirements: Path
    work: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


class Contender:
    """One way of installing the workload; subclasses say how."""

    name = "contender"
    family = "contender"
    """Contenders of one family fill a cache the same way (one warm fill serves them all)."""
    uses_cache = True
    linked: tuple[str, ...] = ("*",)
    """Top-level cache entries (globs) a snapshot copy may hardlink: the contender
    replaces files there (write, then rename) and never rewrites one in place."""

    def argv(self, ctx: RunContext) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: RunContext) -> dict[str, str]:
        return base_env(ctx.work)

    def ci_prune(self, ctx: RunContext) -> list[str] | None:
        """What a CI job runs before saving the cache (``None``: nothing)."""
        return None

    def prepare(self, ctx: RunContext) -> list[str] | None:
        """What runs on a copied cache before a measured run (``None``: nothing)."""
        return None

    def _index(self, ctx: RunContext) -> list[str]:
        # pip caches HTTP responses only from HTTPS or trusted hosts.
        host = urlsplit(ctx.index_url).hostname or ""
        return ["--index-url", ctx.index_url, "--trusted-host", host]


class Pip(Contender):
    """pip 26.3 in the venv with its own default cache (a CI job saves it as is)."""

    name = family = "pip"

    def argv(self, ctx: RunContext) -> list[str]:
        return [
            str(ctx.python),
            "-m",
            "pip",
            "install",
            *self._index(ctx),
            "-r",
            str(ctx.requirements),
        ]

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**base_env(ctx.work), "PIP_CACHE_DIR": str(ctx.cache)}


class NoCache(Pip):
    """The popular always-fresh recipe: ``--no-cache-dir --upgrade --force-reinstall``."""

    name = family = "no-cache"
    uses_cache = False

    def argv(self, ctx: RunContext) -> list[str]:
        return [*super().argv(ctx), "--no-cache-dir", "--upgrade", "--force-reinstall"]


class Uv(Contender):
    """``uv pip install`` into the same venv, with extra flags per variant."""

    family = "uv"
    linked = ("archive-v*",)  # unpacked wheels; uv rewrites its cached pages in place after a 304

    def _index(self, ctx: RunContext) -> list[str]:
        return ["--index-url", ctx.index_url]  # uv caches plain-HTTP responses too

    def __init__(self, name: str = "uv", flags: Sequence[str] = ()) -> None:
        self.name = name
        self.flags = tuple(flags)

    def argv(self, ctx: RunContext) -> list[str]:
        cmd = [uv_binary(), "pip", "install", "--python", str(ctx.python), *self._index(ctx)]
        return [*cmd, "-r", str(ctx.requirements), *self.flags]

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**base_env(ctx.work), "UV_CACHE_DIR": str(ctx.cache)}

    def ci_prune(self, ctx: RunContext) -> list[str] | None:
        return [uv_binary(), "cache", "prune", "--ci", "--cache-dir", str(ctx.cache)]


class Pipfresh(Contender):
    """``pipfresh install`` as a user gets it: the venv's pip 26.3, pipfresh's managed cache.

    ``installer`` sets ``PIPFRESH_INSTALLER`` (``None``: pipfresh's default, whatever it is).
    """

    family = "pipfresh"

    def __init__(
        self, name: str = "pipfresh", prune_args: Sequence[str] = (), installer: str | None = None
    ) -> None:
        self.name = name
        self.prune_args = tuple(prune_args)
        self.installer = installer

    def argv(self, ctx: RunContext) -> list[str]:
        cmd = [sys.executable, "-m", "pipfresh", "install", "--python", str(ctx.venv)]
        return [*cmd, *self._index(ctx), "-r", str(ctx.requirements)]

    def env(self, ctx: RunContext) -> dict[str, str]:
        env = {**base_env(ctx.work), "PIPFRESH_CACHE_DIR": str(ctx.cache)}
        if self.installer is not None:
            env["PIPFRESH_INSTALLER"] = self.installer
        return env

    def ci_prune(self, ctx: RunContext) -> list[str] | None:
        return [sys.executable, "-m", "pipfresh", "cache", "prune", "--all", *self.prune_args]


class PipfreshStore(Pipfresh):
    """``pipfresh install`` with ``PIPFRESH_INSTALLER=store``, whatever the default."""

    family = "pipfresh-store"  # its own filling run, so its cache holds the store

    def __init__(self, name: str = "pipfresh (store)", prune_args: Sequence[str] = ()) -> None:
        super().__init__(name, prune_args, installer="store")


class PipfreshPruned(Pipfresh):
    """pipfresh on a cache that ``pipfresh cache prune`` went over first (pages dropped)."""

    def prepare(self, ctx: RunContext) -> list[str] | None:
        return self.ci_prune(ctx)


def default_contenders() -> dict[str, Contender]:
    """Every contender ``--contenders`` knows; :data:`scenarios.SCOPE` says where each runs."""
    contenders: list[Contender] = [
        Pip(),
        NoCache(),
        Uv(),
        Uv("uv --refresh", ["--refresh"]),
        Uv("uv --compile-bytecode", ["--compile-bytecode"]),
        Uv("uv --refresh --compile-bytecode", ["--refresh", "--compile-bytecode"]),
        Pipfresh(),
        PipfreshPruned("pipfresh (pages pruned)"),
    ]
    return {c.name: c for c in contenders}


OPTIONAL_CONTENDERS: dict[str, Contender] = {
    "pipfresh (store)": PipfreshStore(),
    "pipfresh (pip installer)": Pipfresh("pipfresh (pip installer)", installer="pip"),
}
"""Known to ``--contenders``, not run by default: ``-n 3`` has to fit in 25 minutes.

``--contenders 'pipfresh,pipfresh (pip installer)' --scenarios warm`` shows what
the store installer saves over pipfresh's pip path.
"""


# -- one measured run ----------------------------------------------------------------


@dataclass
class Measurement:
    """Everything recorded about one measured run."""

    scenario: str
    contender: str
    python: str
    rep: int
    exit_code: int
    wall: float
    cpu: float
    index_200: int
    index_304: int
    index_bytes: int
    files: int
    file_bytes: int
    metadata: int
    metadata_bytes: int
    other: int
    requests: int
    bytes: int
    cache_bytes: int
    probe: str | None
    probe_expected: str
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        return self.probe != self.probe_expected

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stale": self.stale}


def disk_usage(path: Path) -> int:
    """Bytes on disk under ``path`` like ``du``: blocks, each hardlinked file once."""
    if not path.exists():
        return 0
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def probe_version(python: Path) -> str | None:
    code = (
        "import importlib.metadata as m\n"
        f"try: print(m.version({PROBE!r}))\n"
        "except m.PackageNotFoundError: print('')"
    )
    out = run_checked([str(python), "-c", code]).stdout.strip()
    return out or None


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def measure(
    contender: Contender,
    ctx: RunContext,
    served: Served,
    *,
    scenario: str,
    python: str,
    rep: int,
    log: Path,
    extra: Mapping[str, float] | None = None,
) -> Measurement:
    """Run ``contender`` once, timed, and read what the index served meanwhile.

    CPU time is that of the contender's process tree (``RUSAGE_CHILDREN``, which
    covers pip's build subprocesses once pip has waited for them); the index's
    own threads are in this process and are not counted.
    """
    argv, env = contender.argv(ctx), contender.env(ctx)
    expected = served.newest_probe()
    served.index.reset_counters()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = served.index.counters()
    return Measurement(
        scenario=scenario,
        contender=contender.name,
        python=python,
        rep=rep,
        exit_code=proc.returncode,
        wall=wall,
        cpu=_cpu(after) - _cpu(before),
        index_200=c.index_200,
        index_304=c.index_304,
        index_bytes=c.index_bytes,
        files=c.file_requests,
        file_bytes=c.file_bytes,
        metadata=c.metadata_requests,
        metadata_bytes=c.metadata_bytes,
        other=c.other_requests,
        requests=c.total_requests,
        bytes=c.total_bytes,
        cache_bytes=disk_usage(ctx.cache) if contender.uses_cache else 0,
        probe=probe_version(ctx.python),
        probe_expected=expected,
        extra=dict(extra or {}),
    )


# -- caches as CI moves them -----------------------------------------------------------


_LONG = 30  # actions/cache's --long=30 (toolkit packages/cache/src/internal/tar.ts)


def archive(cache: Path, target: Path, level: int = 3) -> int:
    """``tar --posix`` + ``zstd`` the cache as ``actions/cache`` does; returns the archive's size.

    GNU tar, not :mod:`tarfile`: ``tarfile`` keeps mtimes as floats and restores
    them about 100 ns off, so every file whose mtime a tool records (pipfresh's
    store does) would look changed after a restore that ``actions/cache`` makes
    exact. zstd runs in-process, as actions/cache runs it (``zstd -T0 --long=30``:
    its level, long-distance matching over a 1 GB window).
    """
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=_LONG, enable_ldm=True, threads=-1
    )
    compressor = zstandard.ZstdCompressor(compression_params=params)
    tar = subprocess.Popen(
        ["tar", "--posix", "-cf", "-", "-C", str(cache), "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    with open(target, "wb") as raw:
        compressor.copy_stream(tar.stdout, raw)
    if tar.wait() != 0:
        raise RuntimeError(f"tar exited {tar.returncode} archiving {cache}")
    return target.stat().st_size


def restore(archive_path: Path, dest: Path) -> None:
    """Unpack an archive made by :func:`archive` into a new ``dest`` (GNU tar, like actions/cache)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tar = subprocess.Popen(["tar", "-xf", "-", "-C", str(dest)], stdin=subprocess.PIPE)
    assert tar.stdin is not None
    with open(archive_path, "rb") as raw, tar.stdin:
        zstandard.ZstdDecompressor(max_window_size=1 << _LONG).copy_stream(raw, tar.stdin)
    if tar.wait() != 0:
        raise RuntimeError(f"tar exited {tar.returncode} restoring {archive_path}")
