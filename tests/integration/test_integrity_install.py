"""Installing through the store never does what plain pip would not: a wheel pip rejects
is rejected (with pip's own message, never a traceback), a killed install never leaves
a distribution that looks installed, and a venv changed in place is reported."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import MakeVenv
from helpers import Run, Venv, index_args, install, pipfresh, store_env
from integration.test_fastpath_parity import assert_records_valid
from integration.test_reliability import _group_gone, popen_pipfresh
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

# -- wheels pip rejects --------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def raw_wheel(
    out: Path,
    filename: str,
    files: dict[str, bytes],
    *,
    dist_info: str,
    name: str,
    version: str,
    wheel_version: str = "1.0",
) -> Path:
    """A wheel written member by member, with whatever names it is given (no checks)."""
    files = dict(files)
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    )
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: {wheel_version}\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n".encode()
    )
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


_PKG = {"misname/__init__.py": b"VALUE = 1\n"}
_GOOD = "misname-1.0.dist-info"

# case -> (members, dist-info dir, METADATA version, Wheel-Version, pip's message)
BAD_WHEELS: dict[str, tuple[dict[str, bytes], str, str, str, str]] = {
    "misnamed dist-info": (
        _PKG,
        "othername-2.0.dist-info",
        "1.0",
        "1.0",
        ".dist-info directory 'othername-2.0.dist-info' does not start with 'misname'",
    ),
    "two dist-info directories": (
        {**_PKG, "othername-1.0.dist-info/METADATA": b"Name: othername\nVersion: 1.0\n\n"},
        _GOOD,
        "1.0",
        "1.0",
        "multiple .dist-info directories found",
    ),
    "version mismatch": (
        _PKG,
        "misname-2.0.dist-info",
        "2.0",
        "1.0",
        "inconsistent version: expected '1.0', but metadata has '2.0'",
    ),
    ".. in a .data path": (
        {**_PKG, "misname-1.0.data/purelib/../../misname/x.py": b"X = 1\n"},
        _GOOD,
        "1.0",
        "1.0",
        "'misname-1.0.data/purelib/../../misname/x.py'. .data directory contents should be "
        "named like: '<scheme key>/<path>'",
    ),
    "unknown .data scheme": (
        {**_PKG, "misname-1.0.data/weird/x.txt": b"x\n"},
        _GOOD,
        "1.0",
        "1.0",
        "Unknown scheme key used in",
    ),
    "Wheel-Version 9.0": (
        _PKG,
        _GOOD,
        "1.0",
        "9.0",
        "misname's Wheel-Version (9.0) is not compatible with this version of pip",
    ),
}


def _site_packages(venv: Venv) -> Path:
    return next(venv.path.glob("lib/python*/site-packages"))


def _nothing_of_misname(venv: Venv) -> list[str]:
    site = _site_packages(venv)
    return sorted(p.name for p in site.iterdir() if p.name.lower().startswith(("misname", "other")))


def _output(run: Run) -> str:
    return run.stdout + run.stderr


@pytest.mark.parametrize("case", list(BAD_WHEELS))
def test_a_wheel_pip_rejects_is_rejected_on_every_run(
    case: str, index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """Plain pip, then pipfresh twice (cold, then with the wheel's body in pip's cache):
    each fails, with pip's message, no traceback, nothing of the wheel installed."""
    members, dist_info, version, wheel_version, message = BAD_WHEELS[case]
    index.publish(
        raw_wheel(
            dist_dir,
            "misname-1.0-py3-none-any.whl",
            members,
            dist_info=dist_info,
            name="misname",
            version=version,
            wheel_version=wheel_version,
        )
    )
    plain = make_venv()
    by_pip = plain.pip("install", *index_args(index), "misname", check=False)
    assert by_pip.returncode == 1 and message in by_pip.stdout + by_pip.stderr, by_pip
    # pip itself leaves a .data error's files behind (it fails halfway): no better, no worse
    left_by_pip = _nothing_of_misname(plain)

    env = store_env()
    for round_ in ("first", "second"):
        venv = make_venv()
        run = install(venv, "misname", env=env, index=index)
        assert run.code == 1, (round_, run)
        assert message in _output(run), (round_, run)
        assert "Traceback" not in _output(run), (round_, run)
        assert _nothing_of_misname(venv) == left_by_pip, (round_, run)


def test_a_newer_minor_wheel_version_is_installed_with_pips_warning(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """Wheel-Version 1.9: pip warns and installs; so does pipfresh, both runs."""
    index.publish(
        raw_wheel(
            dist_dir,
            "misname-1.0-py3-none-any.whl",
            _PKG,
            dist_info=_GOOD,
            name="misname",
            version="1.0",
            wheel_version="1.9",
        )
    )
    warning = "Installing from a newer Wheel-Version (1.9)"
    plain = make_venv()
    by_pip = plain.pip("install", *index_args(index), "misname")
    assert warning in by_pip.stdout + by_pip.stderr
    env = store_env()
    for round_ in ("first", "second"):
        venv = make_venv()
        run = install(venv, "misname", env=env, index=index).ok()
        assert warning in _output(run), (round_, run)
        assert venv.run("-c", "import misname; print(misname.VALUE)").stdout == "1\n"
        assert _nothing_of_misname(venv) == _nothing_of_misname(plain)


# -- a kill while linking --------------------------------------------------------------

_BIG_MODULES = 1600  # files enough that linking one wheel takes measurable time
_IMPORTS = "import kapp, kbig, klib, ksmall, kbig.p07.m0742; print(kapp.main())"


def publish_link_workload(index: PackageIndex, dist_dir: Path) -> None:
    """Four wheels: one with thousands of files and a licenses/ directory in its .dist-info,
    one with a launcher and data files, the rest small; kapp needs all of them."""
    big = {"kbig/__init__.py": "VALUE = 'big'\n"}
    for i in range(_BIG_MODULES):
        package = f"kbig/p{i // 100:02d}"
        big[f"{package}/__init__.py"] = ""
        big[f"{package}/m{i:04d}.py"] = f"N = {i}\n"
    licenses = {
        "kbig-1.0.dist-info/licenses/LICENSE": b"MIT\n",
        "kbig-1.0.dist-info/licenses/third_party/NOTICE": b"notice\n",
    }
    index.publish(
        build_wheel(
            dist_dir,
            "kapp",
            "1.0",
            requires=["kbig", "klib", "ksmall"],
            modules={"kapp/__init__.py": "def main():\n    return 0\n"},
            entry_points={"console_scripts": {"kapp": "kapp:main"}},
            extra_files={"kapp-1.0.data/data/share/kapp/readme.txt": b"readme\n"},
        ),
        build_wheel(dist_dir, "kbig", "1.0", modules=big, extra_files=licenses),
        build_wheel(dist_dir, "klib", "1.0"),
        build_wheel(dist_dir, "ksmall", "1.0"),
    )


def _incomplete_dist_infos(site: Path) -> list[str]:
    """.dist-info directories without a RECORD, or whose RECORD names a missing file."""
    bad = []
    for info in sorted(site.glob("*.dist-info")):
        try:
            with open(info / "RECORD", newline="", encoding="utf-8") as fp:
                rows = list(csv.reader(fp))
        except OSError:
            bad.append(f"{info.name} (no RECORD)")
            continue
        missing = [row[0] for row in rows if not (site / row[0]).exists()]
        if missing:
            bad.append(f"{info.name} ({len(missing)} missing, e.g. {missing[0]})")
    return bad


def _state(site: Path) -> str:
    """Where the kill landed, told from what it left."""
    infos = len(list(site.glob("k*.dist-info")))
    building = len(list(site.glob(".k*.dist-info.pipfresh-*.tmp")))
    linked = len(list(site.glob("kbig/p*/m*.py")))
    if infos == 4:
        return "complete"
    if building:
        return f"building a .dist-info ({infos} of 4 done)"
    if linked or infos:
        return f"mid-link ({linked} of {_BIG_MODULES} kbig modules, {infos} of 4 done)"
    return "early (no kbig module linked yet)"


@pytest.mark.slow
def test_a_kill_while_linking_never_leaves_a_distribution_that_looks_installed(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """SIGKILL pipfresh's process group at stepped delays after linking starts (and random
    ones until enough kills landed mid-link). At every point each .dist-info present is
    complete; the next run (pipfresh, or at two points plain ``pip install
    --force-reinstall``) makes every distribution importable, RECORDs valid, pip check
    clean, no half-built .dist-info left. Before, a .dist-info appeared first."""
    publish_link_workload(index, dist_dir)
    env = store_env()  # the default installer, the store warmed by a first install
    warm = make_venv(pip=None)
    install(warm, "kapp", env=env, index=index).ok()

    by_pip = {0.01, 0.08}  # repaired by plain pip (26.3, in the venv) instead of pipfresh

    def kill_then_rerun(delay: float) -> tuple[str, list[str]]:
        victim = make_venv() if delay in by_pip else make_venv(pip=None)
        site = next(victim.path.glob("lib/python*/site-packages"))
        proc = popen_pipfresh(
            "install", "--python", victim.python, *index_args(index), "kapp", env=env
        )
        while proc.poll() is None and not any(site.glob("k*")):
            time.sleep(0.001)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert _group_gone(proc.pid, 10)
        where, broken = _state(site), _incomplete_dist_infos(site)

        if delay in by_pip:
            victim.pip("install", "--force-reinstall", *index_args(index), "kapp")
            check = victim.pip("check", check=False)
        else:
            install(victim, "kapp", env=env, index=index).ok()
            pip_check = [sys.executable, "-m", "pip", "--python", str(victim.python), "check"]
            check = subprocess.run(pip_check, capture_output=True, text=True)
        assert victim.run("-c", _IMPORTS).stdout == "0\n", where
        assert subprocess.run([victim.bin / "kapp"], check=True).returncode == 0
        assert assert_records_valid(victim) > _BIG_MODULES
        assert check.returncode == 0, (where, check.stdout, check.stderr)
        names = "import importlib.metadata as m; print(sorted(d.name for d in m.distributions()))"
        expected = ["kapp", "kbig", "klib", "ksmall", *(["pip"] if delay in by_pip else [])]
        assert victim.run("-c", names).stdout == f"{expected}\n", where
        # pipfresh clears a half-built .dist-info it left; plain pip does not know it (harmless)
        assert delay in by_pip or list(site.glob(".*.tmp")) == [], where
        return where, broken

    steps = [0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.25]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(steps, pool.map(kill_then_rerun, steps)))
        rng = random.Random(10)
        for _attempt in range(8):  # until three kills landed while files were being linked
            if sum(w.startswith(("mid-link", "building")) for w, _b in outcomes.values()) >= 3:
                break
            extra = [round(rng.uniform(0, 0.3), 4) for _ in range(2)]
            outcomes.update(zip(extra, pool.map(kill_then_rerun, extra)))
    for delay, (where, broken) in sorted(outcomes.items()):
        print(f"kill {delay * 1000:5.1f} ms after linking started: {where}; incomplete: {broken}")
    assert all(broken == [] for _w, broken in outcomes.values()), outcomes
    landed = [w for w, _b in outcomes.values() if w.startswith(("mid-link", "building"))]
    assert len(landed) >= 3, outcomes


# -- a venv changed in place -----------------------------------------------------------


def test_a_reinstall_reports_a_distribution_changed_in_place(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """An installed file edited (same size, mtime kept, a new inode so the store is not
    touched) and one deleted: ``--force-reinstall`` says so in one note, then the files
    are whole again and the next reinstall has nothing to report."""
    index.publish(
        build_wheel(
            dist_dir,
            "edited",
            "1.0",
            modules={"edited/__init__.py": "VALUE = 1\n", "edited/other.py": "X = 1\n"},
        ),
        build_wheel(dist_dir, "untouched", "1.0"),
    )
    venv = make_venv(pip=None)
    args = ["install", "--python", venv.python, *index_args(index), "edited", "untouched"]
    first = pipfresh(*args, env=store_env()).ok()
    assert "note:" not in first.stderr
    site = _site_packages(venv)
    module = site / "edited" / "__init__.py"
    st = module.stat()
    module.unlink()  # the store's inode stays as it was
    module.write_text("VALUE = 2\n")
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    (site / "edited" / "other.py").unlink()

    run = pipfresh(*args, "--force-reinstall", env=store_env()).ok()
    notes = [line for line in run.stderr.splitlines() if "note:" in line]
    assert notes == [
        f"pipfresh: note: edited 1.0 in {venv.path} was changed in place "
        "(2 files differ from its RECORD)"
    ], run.stderr
    assert venv.run("-c", "import edited, edited.other; print(edited.VALUE)").stdout == "1\n"
    again = pipfresh(*args, "--force-reinstall", env=store_env()).ok()
    assert "note:" not in again.stderr
    quiet = pipfresh(*args, "--force-reinstall", "-q", env=store_env()).ok()
    assert quiet.stderr == ""
