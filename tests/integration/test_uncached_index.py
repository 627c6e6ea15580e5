"""An index that sends no caching headers: each wheel is downloaded once, then never again.

Many private indexes and mirrors send no ``Cache-Control``, ``ETag`` or
``Last-Modified``, so pip's HTTP cache keeps nothing they serve; without PEP 658
metadata pip's dry run downloads every wheel to read it. Plain pip downloads each
wheel once per install. Counted at the index, per file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, install, installed_version, pipfresh, store_env
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


def _publish(index: Any, dist_dir: Path, metadata: bool) -> list[str]:
    wheels = [
        build_wheel(dist_dir, "app", "1.0", requires=["dep"]),
        build_wheel(dist_dir, "dep", "1.0"),
    ]
    index.publish(*wheels)
    index.serve_uncached("app", "dep", metadata=metadata)
    return [w.name for w in wheels]


def _downloads(index: Any, names: list[str]) -> dict[str, int]:
    """How many times each wheel's body was sent since the last reset."""
    served = index.counters().downloads
    return {name: served.get(name, 0) for name in names}


# pip 23.0.1 keeps http/ (bodies inside the metadata file), 23.3.2 http-v2/; both, like
# 24.x, download every wheel in the dry run even where PEP 658 metadata is offered.
# pip 26.3 downloads in the dry run only without that metadata.
@pytest.mark.parametrize(
    ("pip_version", "metadata"),
    [("23.0.1", False), ("23.3.2", False), ("24.3.1", True), ("26.3", False), ("26.3", True)],
    ids=["23.0.1", "23.3.2", "24.3.1-pep658", "26.3", "26.3-pep658"],
)
def test_each_wheel_is_downloaded_once_and_then_never(
    pip_version: str,
    metadata: bool,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    names = _publish(index, dist_dir, metadata)
    summary = tmp_path / "s.json"

    # Plain pip: once per install, every install (nothing lands in its cache).
    pip_cache = tmp_path / "pip-cache"
    for name in ("pip-1", "pip-2"):
        venv = make_venv(py311, pip=pip_version, name=name)
        index.reset_counters()
        venv.pip("install", *index_args(index), "--cache-dir", pip_cache, "app",
                 env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})  # fmt: skip
        assert _downloads(index, names) == dict.fromkeys(names, 1)

    # pipfresh: once over a cold install, then none into another new venv.
    for round_, expected in (("cold", 1), ("warm", 0)):
        venv = make_venv(py311, pip=pip_version, name=round_)
        index.reset_counters()
        run = install(
            venv, "app",
            env=store_env(), summary=summary, index=index,
        ).ok()  # fmt: skip
        assert _downloads(index, names) == dict.fromkeys(names, expected), (round_, run)
        assert index.counters().paths("file").count(f"/files/{names[0]}") == expected
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        assert installed_version(venv.python, "app") == "1.0"
        assert installed_version(venv.python, "dep") == "1.0"


def _flavoured(dist_dir: Path, content: str) -> Path:
    modules = {"pkg/__init__.py": f"FLAVOUR = {content!r}\n"}
    return build_wheel(dist_dir / content, "pkg", "1.0", modules=modules)


def _flavour(venv: Any) -> str:
    return str(venv.run("-c", "import pkg; print(pkg.FLAVOUR)").stdout.strip())


@pytest.mark.parametrize("listed", [True, False], ids=["hashes-on-page", "bare-page"])
def test_a_file_replaced_under_its_url_is_installed_new(
    listed: bool,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    """What pipfresh keeps is what the page vouches for. A page that lists the new hash
    fails pip's check of the kept file: it is dropped and pip resolves again. A page
    that lists no hash vouches for nothing: nothing is kept past the run, pip downloads."""
    index.publish(_flavoured(dist_dir, "old"))
    index.serve_uncached("pkg")
    if not listed:
        index.serve_statically("pkg")
    args = ["install", *index_args(index), "pkg"]
    summary = tmp_path / "s.json"
    first = make_venv(py311, name="first")
    pipfresh(*args, "--python", first.python, env=store_env()).ok()
    assert _flavour(first) == "old"

    new = _flavoured(dist_dir, "new")
    index.publish(new)
    for name, downloads in (("second", 1), ("third", 1 if not listed else 0)):
        venv = make_venv(py311, name=name)
        index.reset_counters()
        run = pipfresh(*args, "--python", venv.python, env=store_env(), summary=summary).ok()
        assert _flavour(venv) == "new", run
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        assert index.counters().downloads.get(new.name, 0) == downloads, (name, run)
        replaced = "no longer match their index page" in run.stderr
        assert replaced is (listed and name == "second"), run.stderr


def test_with_the_users_own_log_too(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """``--log`` of the user's: pipfresh adds none, reads this run's part of theirs (which
    keeps every run's), and still keeps each download once."""
    names = _publish(index, dist_dir, metadata=False)
    log = tmp_path / "mine.log"
    for round_, expected in (("cold", 1), ("warm", 0)):
        venv = make_venv(py311, pip="26.3", name=round_)
        index.reset_counters()
        run = install(
            venv, "--log", log, "app",
            env=store_env(), index=index,
        ).ok()  # fmt: skip
        assert _downloads(index, names) == dict.fromkeys(names, expected), (round_, run)
        assert installed_version(venv.python, "app") == "1.0"
    assert log.read_text().count("Would install app-1.0") == 2  # both dry runs, in theirs
