"""Shared fixtures: an isolated pip environment, pinned pip wheels, interpreters, venvs, an index.

Import the helpers with ``from conftest import PIP_VERSIONS, pip_wheel, require_python``.
"""

from __future__ import annotations

import base64
import csv
import email.parser
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from helpers import Venv
from pipfresh.cache import lock
from pipfresh.testing.index import PackageIndex

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / ".cache" / "test-wheels"

PIP_VERSIONS = ("23.0.1", "23.3.2", "24.3.1", "25.3", "26.3")
"""The pip versions pipfresh supports and tests against (newest last)."""
DEFAULT_PIP = "26.3"
FLIT_CORE_VERSION = "4.2.0"  # newest flit_core whose Requires-Python admits 3.8
PYTHON_VERSIONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")

# Pinned so a corrupted cache or a changed upload can never go unnoticed.
_WHEELS = {
    "pip-23.0.1-py3-none-any.whl": "236bcb61156d76c4b8a05821b988c7b8c35bf0da28a4b614e8d6ab5212c25c6f",
    "pip-23.3.2-py3-none-any.whl": "5052d7889c1f9d05224cd41741acb7c5d6fa735ab34e339624a614eaaa7e7d76",
    "pip-24.3.1-py3-none-any.whl": "3790624780082365f47549d032f3770eeb2b1e8bd1f7b2e02dace1afa361b4ed",
    "pip-25.3-py3-none-any.whl": "9655943313a94722b7774661c21049070f6bbb0a1516bf02f7c8d5d9201514cd",
    "pip-26.1.2-py3-none-any.whl": "382ff9f685ee3bc25864f820aa50505825f10f5458ffff07e30a6d96e5715cab",
    "pip-26.3-py3-none-any.whl": "f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13",
    f"flit_core-{FLIT_CORE_VERSION}-py3-none-any.whl": (
        "2bee22dc8ba89c2e35b4e1ad575e596aac945c85672dd8f3cad21b629036e044"
    ),
}

_STRIPPED_ENV = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME")


# -- environment isolation ----------------------------------------------------------


def _is_leaky(key: str) -> bool:
    return key.startswith(("PIP_", "PIPFRESH_")) or key in _STRIPPED_ENV


@pytest.fixture(autouse=True)
def _isolated_pip_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep this machine's pip config (pip.conf, PIP_* variables) out of every test.

    Subprocesses inherit ``os.environ``, so patching it isolates them too.
    """
    for key in list(os.environ):
        if _is_leaky(key):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip then reads no config file at all
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_NO_INPUT", "1")
    monkeypatch.setenv("PIPFRESH_CACHE_DIR", str(tmp_path / "pipfresh-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# -- pinned wheels from PyPI -----------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _is_leaky(k)}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _download(missing: list[str], dest: Path) -> None:
    """Fetch wheels from PyPI (pip's default index) into ``dest``, hash-checked.

    One pip run per wheel: the resolver refuses two versions of one project.
    """
    flags = "--no-deps --only-binary=:all: --require-hashes --no-cache-dir --timeout 60 --retries 3"
    procs = []
    for filename in missing:
        project, version = filename.split("-")[:2]
        reqs = dest / f"{filename}.txt"
        reqs.write_text(f"{project}=={version} --hash=sha256:{_WHEELS[filename]}\n")
        cmd = [sys.executable, "-m", "pip", "download", *flags.split(), f"-d{dest}", f"-r{reqs}"]
        proc = subprocess.Popen(
            cmd, env=_download_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append((filename, proc))
    failures = []
    for filename, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"{filename}:\n{out}")
    if failures:
        raise RuntimeError("could not download test wheels from PyPI:\n" + "\n".join(failures))


@functools.cache
def ensure_wheelhouse() -> Path:
    """Download the pinned wheels once into ``.cache/test-wheels`` (safe under xdist)."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    with lock.hold(WHEELHOUSE / ".lock", shared=False):
        missing = [
            f
            for f, digest in _WHEELS.items()
            if not (WHEELHOUSE / f).is_file() or _sha256(WHEELHOUSE / f) != digest
        ]
        if missing:
            with tempfile.TemporaryDirectory(dir=WHEELHOUSE, prefix=".download-") as tmp:
                _download(missing, Path(tmp))
                for filename in missing:
                    (Path(tmp) / filename).replace(WHEELHOUSE / filename)
    return WHEELHOUSE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Directory with the pinned pip wheels and the flit_core wheel."""
    return ensure_wheelhouse()


def pip_wheel(version: str) -> Path:
    """The wheel of pip ``version`` in the wheelhouse (downloading it on first use)."""
    path = ensure_wheelhouse() / f"pip-{version}-py3-none-any.whl"
    if not path.is_file():
        raise LookupError(f"pip {version} is not in the test wheelhouse; add it to _WHEELS")
    return path


def flit_core_wheel() -> Path:
    return ensure_wheelhouse() / f"flit_core-{FLIT_CORE_VERSION}-py3-none-any.whl"


@functools.cache
def _wheel_requires_python(wheel: Path) -> SpecifierSet:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = email.parser.BytesHeaderParser().parsebytes(zf.read(name))
    return SpecifierSet(meta.get("Requires-Python", ""))


# Pythons a pip cannot run on although its Requires-Python admits them: pip 23.0.1's
# vendored pkg_resources needs pkgutil.ImpImporter, which Python 3.12 removed.
_RUNS_BELOW = {"23.0.1": "3.12"}


def pip_supports(pip_version: str, python_version: str) -> bool:
    """Whether pip ``pip_version`` runs on Python ``X.Y`` (the wheel's Requires-Python, less
    what ``_RUNS_BELOW`` knows)."""
    below = _RUNS_BELOW.get(pip_version)
    if below is not None and Version(python_version) >= Version(below):
        return False
    return _wheel_requires_python(pip_wheel(pip_version)).contains(f"{python_version}.0")


def python_for(pip_version: str) -> Path:
    """An interpreter that runs pip ``pip_version``: the one running the tests when it can,
    else the newest installed one that can; skips the test when none can."""
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if pip_supports(pip_version, ours):
        return Path(sys.executable)
    found = find_interpreters()
    for version in sorted(found, key=Version, reverse=True):
        if pip_supports(pip_version, version):
            return found[version]
    pytest.skip(f"pip {pip_version} runs on none of the installed Pythons ({ours}, {list(found)})")


# -- interpreters ------------------------------------------------------------------


@functools.cache
def find_interpreters() -> dict[str, Path]:
    """``"3.8".."3.13"`` -> newest pyenv-installed CPython of that minor version, else a
    ``python3.X`` on PATH (CI's setup-python puts every version it installs there)."""
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]) / "versions")
    roots.append(Path.home() / ".pyenv" / "versions")
    best: dict[str, tuple[int, Path]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            m = re.fullmatch(r"(3\.\d+)\.(\d+)", entry.name)
            if m is None or m.group(1) not in PYTHON_VERSIONS:
                continue
            exe = entry / "bin" / f"python{m.group(1)}"
            patch = int(m.group(2))
            if os.access(exe, os.X_OK) and patch > best.get(m.group(1), (-1, exe))[0]:
                best[m.group(1)] = (patch, exe)
    found = {v: best[v][1] for v in PYTHON_VERSIONS if v in best}
    for version in PYTHON_VERSIONS:
        on_path = shutil.which(f"python{version}")
        if version not in found and on_path and "shims" not in Path(on_path).parts:
            found[version] = Path(on_path)
    return found


@pytest.fixture(scope="session")
def interpreters() -> dict[str, Path]:
    return find_interpreters()


def require_python(version: str) -> Path:
    """The interpreter for ``X.Y``, or skip the test when this machine lacks it."""
    exe = find_interpreters().get(version)
    if exe is None:
        pytest.skip(f"Python {version} is not installed (pyenv)")
    return exe


@pytest.fixture
def py311() -> Path:
    """Python 3.11: the interpreter most end-to-end tests install into."""
    return require_python("3.11")


@functools.cache
def python_version_of(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# -- virtual environments ------------------------------------------------------------


class MakeVenv(Protocol):
    """The ``make_venv`` fixture's factory."""

    def __call__(
        self, python: Path | None = None, pip: str | None = DEFAULT_PIP, name: str | None = None
    ) -> Venv: ...


def _create_venv(python: Path, path: Path, pip: str | None) -> Venv:
    """``python -m venv --without-pip``, then pip installed offline by running pip out of its
    own wheel (the slow part: seconds, against a fraction of one for the venv)."""
    subprocess.run(
        [str(python), "-m", "venv", "--without-pip", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    bindir = path / ("Scripts" if os.name == "nt" else "bin")
    venv = Venv(path=path, python=bindir / "python", bin=bindir)
    if pip is not None:
        wheel = pip_wheel(pip)
        venv.run(
            f"{wheel}/pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-cache-dir",
            "--no-compile",
            "--disable-pip-version-check",
            str(wheel),
        )
    return venv


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


# distlib writes a ``/bin/sh`` trampoline instead of a plain shebang past this length, so
# a copy is the same as a fresh venv only when both paths stay below it.
_SHEBANG_MAX = 120


class VenvTemplates:
    """One venv per (interpreter, pip version) per session (per xdist worker), copied to
    each test's path with the paths in its scripts, ``pyvenv.cfg`` and pip's RECORD
    rewritten, so the copy is byte for byte what ``_create_venv`` makes there."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made: dict[tuple[str, str], Venv] = {}

    def _template(self, python: Path, pip: str) -> Venv:
        key = (str(python), pip)
        if key not in self._made:
            path = self._root / f"venv-template-{len(self._made)}"
            self._made[key] = _create_venv(python, path, pip)
        return self._made[key]

    def make(self, python: Path, path: Path, pip: str) -> Venv:
        if os.name == "nt" or len(str(path)) + len("/bin/python") > _SHEBANG_MAX:
            return _create_venv(python, path, pip)
        template = self._template(python, pip)
        shutil.copytree(
            template.path, path, symlinks=True, copy_function=shutil.copy, dirs_exist_ok=True
        )
        # the path, then the venv's name in the activate scripts' prompts
        swaps = [(str(template.path), str(path)), (template.path.name, path.name)]
        rewritten: set[Path] = set()
        for file in [path / "pyvenv.cfg", *sorted((path / "bin").iterdir())]:
            if file.is_symlink() or not file.is_file():
                continue
            data = changed = file.read_bytes()
            for old, new in swaps:
                changed = changed.replace(old.encode(), new.encode())
            if changed != data:
                file.write_bytes(changed)
                rewritten.add(file)
        for record in path.glob("lib/python*/site-packages/*.dist-info/RECORD"):
            _rehash_record(record, rewritten)
        return Venv(path=path, python=path / "bin" / "python", bin=path / "bin")


def _rehash_record(record: Path, rewritten: set[Path]) -> None:
    """Give the rewritten scripts their new hash and size in ``record`` (written as pip does)."""
    site = record.parent.parent
    with record.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for row in rows:
        file = Path(os.path.normpath(site / row[0]))
        if file in rewritten:
            data = file.read_bytes()
            row[1:3] = [_record_hash(data), str(len(data))]
    with record.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="session")
def venv_templates(tmp_path_factory: pytest.TempPathFactory) -> VenvTemplates:
    return VenvTemplates(tmp_path_factory.mktemp("venv-templates"))


@pytest.fixture
def make_venv(tmp_path: Path, wheelhouse: Path, venv_templates: VenvTemplates) -> MakeVenv:
    """Factory: ``make_venv(python=None, pip="26.3", name=None) -> Venv``.

    pip is installed offline from the wheelhouse (once per interpreter and pip version: see
    ``VenvTemplates``); ``pip=None`` leaves the venv without pip.  ``python=None`` is the
    interpreter running the tests, or another one when that pip cannot run on it
    (``python_for``).  Skips when that pip does not support that Python (pip 23.0.1
    runs below 3.12, 25.x needs 3.9+, 26.x needs 3.10+).
    """
    counter = 0

    def make(
        python: Path | None = None, pip: str | None = DEFAULT_PIP, name: str | None = None
    ) -> Venv:
        nonlocal counter
        counter += 1
        if python is None:
            python = python_for(pip) if pip is not None else Path(sys.executable)
        python = Path(python)
        path = tmp_path / (name or f"venv{counter}")
        if pip is None:
            return _create_venv(python, path, None)
        pyver = python_version_of(python)
        if not pip_supports(pip, pyver):
            pytest.skip(f"pip {pip} does not support Python {pyver}")
        return venv_templates.make(python, path, pip)

    return make


# -- the package index -------------------------------------------------------------


@pytest.fixture
def dist_dir(tmp_path: Path) -> Path:
    """Scratch directory to build distributions in before publishing them."""
    path = tmp_path / "dists"
    path.mkdir()
    return path


@pytest.fixture
def index(tmp_path: Path, wheelhouse: Path) -> Iterator[PackageIndex]:
    """A running loopback index over ``<tmp_path>/index-files``, serving flit_core already
    (so sdists build offline); pass ``--index-url index.index_url --trusted-host 127.0.0.1``."""
    idx = PackageIndex(tmp_path / "index-files")
    idx.publish(flit_core_wheel())
    idx.start()
    try:
        yield idx
    finally:
        idx.stop()
