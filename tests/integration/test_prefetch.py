"""With nothing recorded, the root requirements' pages are asked at once before pip's
dry run, into pip's cache; pip then reads them from there. Counted at the index."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import MakeVenv
from helpers import index_args, install, installed_version
from pipfresh.layout import STORE_LAYOUT
from pipfresh.testing.dists import build_sdist, build_wheel, native_tag
from pipfresh.testing.index import PackageIndex

ROOTS = [f"root{i}" for i in range(6)]


def _publish(index: PackageIndex, dist_dir: Path) -> None:
    """Six root projects, each needing ``shared`` (a page only pip's resolver finds)."""
    index.publish(build_wheel(dist_dir, "shared", "1.0"))
    for name in ROOTS:
        index.publish(build_wheel(dist_dir, name, "1.0", requires=["shared"]))


def _pages(index: PackageIndex) -> dict[str, list[str]]:
    """Each page asked in the run: the kinds of its answers (index_200, index_304)."""
    out: dict[str, list[str]] = {}
    for record in index.counters().records:
        if record.kind.startswith("index_"):
            out.setdefault(record.path, []).append(record.kind)
    return out


def _by_project(index: PackageIndex) -> dict[str, list[str]]:
    """``_pages``, by project name."""
    return {p.rstrip("/").rsplit("/", 1)[-1]: kinds for p, kinds in _pages(index).items()}


def test_the_root_pages_are_asked_at_once_and_each_page_once(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    _publish(index, dist_dir)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(ROOTS[1:]) + "\n")
    venv = make_venv()
    index.hold()
    argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python)]
    argv += [*index_args(index), ROOTS[0], "-r", str(reqs)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # pip alone asks one page, waits for it, then the next: six at once are pipfresh's
        assert index.wait_held(len(ROOTS), timeout=120), "the root pages were not asked at once"
    finally:
        index.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    pages = _pages(index)
    assert all(kinds == ["index_200"] for kinds in pages.values()), pages  # each once
    assert {p.rstrip("/").rsplit("/", 1)[-1] for p in pages} == {*ROOTS, "shared"}
    for name in [*ROOTS, "shared"]:
        assert installed_version(venv.python, name) == "1.0"


def test_a_restored_cache_is_asked_conditionally_and_a_new_version_still_found(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """Half warm: another requirement set ran before on this partition (its pages are in
    pip's cache); a new root requirement and a release since. Unchanged pages cost a
    304, the changed one is read whole, once; pip installs the new version."""
    _publish(index, dist_dir)
    install(make_venv(), *ROOTS[:3], index=index).ok()
    index.publish(build_wheel(dist_dir, "shared", "1.1"))
    index.reset_counters()
    venv = make_venv()
    install(venv, *ROOTS[:4], index=index).ok()
    by_name = _by_project(index)
    assert by_name == {
        **{name: ["index_304"] for name in ROOTS[:3]},
        ROOTS[3]: ["index_200"],  # new to this partition
        "shared": ["index_200"],  # changed: from the last resolution, asked at once too
    }, by_name
    assert installed_version(venv.python, "shared") == "1.1"


def test_an_older_pip_asks_every_page_itself_and_nothing_ahead(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """pip < 26.2 revalidates every page it reads whatever its cache holds: a page asked
    ahead would cost two requests."""
    _publish(index, dist_dir)
    venv = make_venv(pip="24.3.1")
    install(venv, *ROOTS, index=index).ok()
    pages = _pages(index)
    assert all(len(kinds) == 1 for kinds in pages.values()), pages
    assert installed_version(venv.python, "shared") == "1.0"


def _held_metadata(index: PackageIndex) -> list[str]:
    return [p for p in index.held_paths() if p.endswith(".metadata")]


def test_the_pinned_roots_metadata_is_asked_at_once_and_each_file_once(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """Exact pins: after their pages, their wheels' ``.metadata`` is asked all at once
    (pip asks one file after another), and pip reads it from its cache."""
    _publish(index, dist_dir)
    index.publish(build_wheel(dist_dir, ROOTS[0], "2.0", requires=["shared"]))  # not pinned to
    venv = make_venv()
    argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python)]
    argv += [*index_args(index), *(f"{name}==1.0" for name in ROOTS)]
    index.hold()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert index.wait_held(len(ROOTS), timeout=120), "the root pages were not asked at once"
        index.release()
        index.hold()  # before the pages are read: the metadata requests come after them
        deadline = time.monotonic() + 120
        while len(_held_metadata(index)) < len(ROOTS) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_held_metadata(index)) == len(ROOTS), "the metadata was not asked at once"
    finally:
        index.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    metadata = [r.path for r in index.counters().records if r.path.endswith(".metadata")]
    assert sorted(metadata) == sorted(set(metadata)), metadata  # each once in the run
    assert sum("-1.0-" in p and "/shared-" not in p for p in metadata) == len(ROOTS), metadata
    for name in ROOTS:
        assert installed_version(venv.python, name) == "1.0"


def test_the_pinned_wheels_are_fetched_at_once_while_pip_resolves(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """pip downloads one file after another; the pinned roots' wheels are asked all at
    once, while pip's dry run reads only metadata, then the store takes them from pip's
    cache: each file once in the run. A wheel already stored is not asked again."""
    _publish(index, dist_dir)
    install(make_venv(), *(f"{name}==1.0" for name in ROOTS[:2]), index=index).ok()
    index.reset_counters()
    venv = make_venv()
    argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python)]
    argv += [*index_args(index), *(f"{name}==1.0" for name in ROOTS)]
    index.hold(kinds=["file"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        new = len(ROOTS) - 2
        assert index.wait_held(new, timeout=120), "the pinned wheels were not asked at once"
        held = sorted(p.rsplit("/", 1)[-1] for p in index.held_paths())
        assert held == [f"{name}-1.0-py3-none-any.whl" for name in ROOTS[2:]], held
    finally:
        index.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    files = index.counters().paths("file")
    assert sorted(f.rsplit("/", 1)[-1] for f in files) == held, files  # each once, no others
    for name in ROOTS:
        assert installed_version(venv.python, name) == "1.0"


def test_a_wheel_fetched_ahead_that_pip_does_not_take_is_never_stored(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """The target ranks the native wheel first, so it is fetched ahead and the store starts
    on it; the user's --hash pins the pure one, which pip takes. The guess cost its bytes:
    it is not published in the store; what is installed is pip's choice."""
    venv = make_venv()
    native = build_wheel(dist_dir / "native", "guess", "1.0", tag=native_tag(venv.python))
    pure = build_wheel(dist_dir / "pure", "guess", "1.0", modules={"guess/__init__.py": "P = 1\n"})
    index.publish(native, pure)
    digest = hashlib.sha256(pure.read_bytes()).hexdigest()
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"guess==1.0 --hash=sha256:{digest}\n")
    install(venv, "-r", reqs, index=index).ok()
    files = sorted(p.rsplit("/", 1)[-1] for p in index.counters().paths("file"))
    assert files == sorted([native.name, pure.name]), files  # each once
    (store,) = Path(os.environ["PIPFRESH_CACHE_DIR"]).glob(
        f"partitions-v1/*/pipfresh/{STORE_LAYOUT}"
    )
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == [digest]
    assert venv.run("-c", "import guess; print(guess.P)").stdout.strip() == "1"


def test_requires_dist_is_followed_ahead_to_the_versions_pip_takes(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """Pinned roots need ``shared<2``, which needs ``deep``: their pages, metadata and the
    wheels of the newest admitted versions are fetched ahead too, all wheels at once
    (pip downloads one after another, and its dry run none); each file once."""
    index.publish(
        build_wheel(dist_dir, "deep", "1.0"),
        build_wheel(dist_dir, "shared", "1.0"),
        build_wheel(dist_dir, "shared", "1.1", requires=["deep; python_version >= '3'"]),
        build_wheel(dist_dir, "shared", "2.0"),  # the roots exclude it
        *(build_wheel(dist_dir, name, "1.0", requires=["shared<2"]) for name in ROOTS[:3]),
    )
    venv = make_venv()
    argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python)]
    argv += [*index_args(index), *(f"{name}==1.0" for name in ROOTS[:3])]
    index.hold(kinds=["file"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert index.wait_held(5, timeout=120), index.held_paths()
        held = sorted(p.rsplit("/", 1)[-1] for p in index.held_paths())
        expected = [f"{n}-1.0-py3-none-any.whl" for n in ("deep", *ROOTS[:3])]
        assert held == sorted([*expected, "shared-1.1-py3-none-any.whl"]), held
    finally:
        index.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    counters = index.counters()
    assert sorted(p.rsplit("/", 1)[-1] for p in counters.paths("file")) == held  # once each
    pages = _pages(index)
    assert all(kinds == ["index_200"] for kinds in pages.values()), pages
    assert installed_version(venv.python, "shared") == "1.1"
    assert installed_version(venv.python, "deep") == "1.0"


def test_a_build_backends_page_is_asked_once_when_pip_builds_for_the_store(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """An sdist: pip's dry run reads flit-core's page to prepare its metadata, then
    ``pip wheel`` builds it for the store in another build environment. The page the dry
    run fetched in this run is not asked again (on pip >= 26.2, which can trust it)."""
    index.publish(build_sdist(dist_dir, "built", "0.3"))
    venv = make_venv()
    install(venv, "built==0.3", index=index).ok()
    by_name = _by_project(index)
    assert by_name == {"built": ["index_200"], "flit-core": ["index_200"]}, by_name
    assert installed_version(venv.python, "built") == "0.3"
    # The next run trusts nothing of this one's: a release since is found, each page once.
    index.publish(build_sdist(dist_dir, "built", "0.4"))
    index.reset_counters()
    venv = make_venv()
    install(venv, "built", index=index).ok()
    by_name = _by_project(index)
    assert by_name == {"built": ["index_200"], "flit-core": ["index_304"]}, by_name
    assert installed_version(venv.python, "built") == "0.4"
