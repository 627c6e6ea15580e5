"""Installing through the store never does what plain pip would not: a wheel pip rejects
is rejected (with pip's own message, never a traceback), a killed install never leaves
a distribution that looks installed, and a venv changed in place is reported."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from helpers import Run, index_args, pipfresh, store_env

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


def _site_packages(venv) -> Path:  # type: ignore[no-untyped-def]
    return next(venv.path.glob("lib/python*/site-packages"))


def _nothing_of_misname(venv) -> list[str]:  # type: ignore[no-untyped-def]
    site = _site_packages(venv)
    return sorted(p.name for p in site.iterdir() if p.name.lower().startswith(("misname", "other")))


def _output(run: Run) -> str:
    return run.stdout + run.stderr


@pytest.mark.parametrize("case", list(BAD_WHEELS))
def test_a_wheel_pip_rejects_is_rejected_on_every_run(
    case: str, index, dist_dir: Path, make_venv, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
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
        run = pipfresh("install", "--python", venv.python, *index_args(index), "misname", env=env)
        assert run.code == 1, (round_, run)
        assert message in _output(run), (round_, run)
        assert "Traceback" not in _output(run), (round_, run)
        assert _nothing_of_misname(venv) == left_by_pip, (round_, run)


def test_a_newer_minor_wheel_version_is_installed_with_pips_warning(
    index, dist_dir: Path, make_venv
) -> None:  # type: ignore[no-untyped-def]
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
        run = pipfresh(
            "install", "--python", venv.python, *index_args(index), "misname", env=env
        ).ok()
        assert warning in _output(run), (round_, run)
        assert venv.run("-c", "import misname; print(misname.VALUE)").stdout == "1\n"
        assert _nothing_of_misname(venv) == _nothing_of_misname(plain)
