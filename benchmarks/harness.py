"""The parts every benchmark is made of: a served corpus, fresh venvs, contenders, one measured run.

Everything runs against pipfresh's own loopback index (``pipfresh.testing``),
so what a contender downloads is counted by the server, request by request,
and nothing leaves 127.0.0.1: pip and uv get no configuration file, no
``PIP_*``/``UV_*`` variables from this shell, and no proxy.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tarfile
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


# -- fresh virtual environments ------------------------------------------------------


class Venvs:
    """Fresh venvs with pip, copied from one template per Python (made once, off the clock)."""

    def __init__(self, work: Path, pip_wheel: Path) -> None:
        self.work = work
        self.pip_wheel = pip_wheel
        self._templates: dict[Path, Path] = {}
        self._count = 0

    def template(self, python: Path) -> Path:
        if python not in self._templates:
            path = self.work / "templates" / f"venv-{len(self._templates)}"
            shutil.rmtree(path, ignore_errors=True)
            run_checked([str(python), "-m", "venv", "--without-pip", str(path)])
            wheel = str(self.pip_wheel)
            install = ["install", "--no-index", "--no-deps", "--no-cache-dir", wheel]
            run_checked(
                [str(path / "bin" / "python"), f"{wheel}/pip", *install], env=base_env(self.work)
            )
            self._templates[python] = path
        return self._templates[python]

    def fresh(self, python: Path) -> Path:
        """A new venv directory (its interpreter is ``<venv>/bin/python``)."""
        self._count += 1
        path = self.work / "venvs" / f"venv-{self._count}"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(self.template(python), path, symlinks=True)
        return path


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

    def argv(self, ctx: RunContext) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: RunContext) -> dict[str, str]:
        return base_env(ctx.work)

    def ci_prune(self, ctx: RunContext) -> list[str] | None:
        """What a CI job runs before saving the cache (``None``: nothing)."""
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
    """``pipfresh install``: the venv's pip 26.3 with pipfresh's managed cache root."""

    family = "pipfresh"

    def __init__(self, name: str = "pipfresh", prune_args: Sequence[str] = ()) -> None:
        self.name = name
        self.prune_args = tuple(prune_args)

    def argv(self, ctx: RunContext) -> list[str]:
        cmd = [sys.executable, "-m", "pipfresh", "install", "--python", str(ctx.venv)]
        return [*cmd, *self._index(ctx), "-r", str(ctx.requirements)]

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**base_env(ctx.work), "PIPFRESH_CACHE_DIR": str(ctx.cache)}

    def ci_prune(self, ctx: RunContext) -> list[str] | None:
        return [sys.executable, "-m", "pipfresh", "cache", "prune", "--all", *self.prune_args]


class PipfreshStore(Pipfresh):
    """``pipfresh install`` with the store installer (``PIPFRESH_INSTALLER=store``)."""

    family = "pipfresh-store"  # its cache also holds the unpacked, compiled store

    def env(self, ctx: RunContext) -> dict[str, str]:
        return {**super().env(ctx), "PIPFRESH_INSTALLER": "store"}


def default_contenders() -> dict[str, Contender]:
    contenders: list[Contender] = [
        Pip(),
        NoCache(),
        Uv(),
        Uv("uv --refresh", ["--refresh"]),
        Uv("uv --compile-bytecode", ["--compile-bytecode"]),
        Pipfresh(),
        PipfreshStore("pipfresh (store)"),
    ]
    return {c.name: c for c in contenders}


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


def copy_cache(src: Path, dest: Path) -> Path:
    """A private copy of a saved cache (hardlinks kept, timestamps kept).

    A real copy: hardlinking the snapshot instead is not safe, uv rewrites its
    cached index pages in place after a 304 and would refresh the snapshot too.
    """
    shutil.rmtree(dest, ignore_errors=True)
    if src.exists():
        run_checked(["cp", "-a", str(src), str(dest)])
    else:
        dest.mkdir(parents=True)
    return dest


def archive(cache: Path, target: Path, level: int = 3) -> int:
    """``tar`` + ``zstd`` the cache as ``actions/cache`` does; returns the archive's size."""
    compressor = zstandard.ZstdCompressor(level=level, threads=-1)
    with (
        open(target, "wb") as raw,
        compressor.stream_writer(raw) as zst,
        tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.add(str(cache), arcname=".")
    return target.stat().st_size


def restore(archive_path: Path, dest: Path) -> None:
    """Unpack an archive made by :func:`archive` into a new ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with (
        open(archive_path, "rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zst,
        tarfile.open(fileobj=zst, mode="r|") as tar,
    ):
        if hasattr(tarfile, "tar_filter"):  # 3.12, and security releases before it
            tar.extractall(dest, filter="tar")
        else:
            tar.extractall(dest)
