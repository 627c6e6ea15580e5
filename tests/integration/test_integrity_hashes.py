"""Hash pins always hold, and a file replaced under its URL is never installed stale.

Each test holds pipfresh (the store installer, the default) against plain pip on
the same loopback index: what pip verifies or refuses, pipfresh does too.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeVenv
from helpers import index_args, install, installed_version, pipfresh, store_env
from pipfresh.pip.report import Item
from pipfresh.resolve import hashpins
from pipfresh.target.interpreter import probe
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

MISMATCH = "THESE PACKAGES DO NOT MATCH THE HASHES"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flavour(venv: Any, module: str) -> str:
    return str(venv.run("-c", f"import {module}; print({module}.FLAVOUR)").stdout.strip())


def dist_info(venv: Any, name: str) -> Path:
    site = Path(probe(venv.python, None).purelib or "")
    (found,) = site.glob(f"{name}-*.dist-info")
    return found


def records(venv: Any, name: str) -> list[str]:
    """The distribution's RECORD lines (file, hash, size), in order."""
    return sorted((dist_info(venv, name) / "RECORD").read_text().splitlines())


def plain_pip(venv: Any, index: Any, *args: str | Path, **env: str) -> Any:
    """pip itself, with its own cache: what pipfresh must match."""
    cache = venv.path.parent / f"{venv.path.name}-pip-cache"
    return venv.pip(
        "install", *index_args(index), "--cache-dir", cache, *args,
        check=False, env={**os.environ, **env},
    )  # fmt: skip


# -- finding 1: pip and setuptools are installed with their hashes -------------------


@pytest.mark.parametrize(
    "require_hashes", [False, True], ids=["hashes-in-file", "PIP_REQUIRE_HASHES"]
)
def test_a_pinned_setuptools_beside_a_build_tagged_twin_is_the_pinned_file(
    require_hashes: bool,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    """pip prefers a build tag (``-1-``) but not over a --hash pin: the second
    ``pip install`` pipfresh runs for setuptools must carry the pin too."""
    plain = build_wheel(
        dist_dir / "plain", "setuptools", "99.0", modules={"setuptools/__init__.py": "FLAVOUR = 'plain'\n"}
    )  # fmt: skip
    built = build_wheel(
        dist_dir / "tagged", "setuptools", "99.0", modules={"setuptools/__init__.py": "FLAVOUR = 'tagged'\n"}
    )  # fmt: skip
    tagged = built.with_name("setuptools-99.0-1-py3-none-any.whl")
    built.rename(tagged)
    app = build_wheel(dist_dir, "app", "1.0")
    index.publish(plain, tagged, app)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(
        f"app==1.0 --hash=sha256:{sha256(app)}\n"
        f"setuptools==99.0 \\\n    --hash=sha256:{sha256(plain)}\n"
    )
    extra = {"PIP_REQUIRE_HASHES": "1"} if require_hashes else {}

    by_pip = make_venv(py311, name="by-pip")
    assert plain_pip(by_pip, index, "-r", reqs, **extra).returncode == 0
    assert flavour(by_pip, "setuptools") == "plain"

    venv = make_venv(py311, name="env")
    summary = tmp_path / "s.json"
    run = install(
        venv, "-r", reqs,
        env=store_env(**extra), summary=summary, index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert flavour(venv, "setuptools") == "plain"
    assert installed_version(venv.python, "app") == "1.0"
    assert records(venv, "setuptools") == records(by_pip, "setuptools")


# -- the store path: pins are checked even when the dry run downloads nothing ---------


@pytest.mark.parametrize("mode", ["hash-checking", "--no-require-hashes"])
def test_a_wrong_hash_pin_fails_as_pip_fails_and_installs_nothing(
    mode: str, index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """The index lists the wheel with its real hash and PEP 658 metadata. In
    hash-checking mode pip's dry run downloads and checks it; with
    ``--no-require-hashes`` pip still checks the pin on install, but its dry run
    fetches metadata only (pip 26.3): then the pin must be checked before the store
    installs anything."""
    app = build_wheel(dist_dir, "app", "1.0", requires=["dep"])
    dep = build_wheel(dist_dir, "dep", "1.0")
    index.publish(app, dep)
    reqs = tmp_path / "requirements.txt"
    lines = [f"app==1.0 --hash=sha256:{sha256(app)}", f"dep==1.0 --hash=sha256:{'0' * 64}"]
    reqs.write_text("\n".join(([mode] if mode.startswith("--") else []) + lines) + "\n")

    by_pip = make_venv(py311, name="by-pip")
    proc = plain_pip(by_pip, index, "-r", reqs)
    assert proc.returncode != 0 and MISMATCH in proc.stdout + proc.stderr, proc.stdout
    assert installed_version(by_pip.python, "app") is None

    # dep in pip's cache and the store already, from an install with the right pin
    good = tmp_path / "good.txt"
    good.write_text(f"dep==1.0 --hash=sha256:{sha256(dep)}\n")
    other = make_venv(py311, name="other")
    install(other, "-r", good, index=index).ok()
    for name in ("env", "again"):
        venv = make_venv(py311, name=name)
        run = install(
            venv, "-r", reqs,
            env=store_env(), summary=tmp_path / "s.json", index=index,
        )  # fmt: skip
        assert run.code == proc.returncode and MISMATCH in run.stdout + run.stderr, run
        assert installed_version(venv.python, "app") is None
        assert installed_version(venv.python, "dep") is None
        assert run.summary is not None
        if mode == "--no-require-hashes":  # the dry run passed: the pins sent it to pip
            assert run.summary["installer"] == "pip", run.summary
            assert run.summary["installer_reason"] == "dep 1.0 matches none of its --hash pins"


# -- finding 7: a file replaced under the same URL -------------------------------------


def _replace(index: Any, dist_dir: Path, name: str, content: str) -> Path:
    wheel = build_wheel(
        dist_dir / content, name, "1.0", modules={f"{name}/__init__.py": f"FLAVOUR = {content!r}\n"}
    )
    index.publish(wheel)
    return wheel


def test_a_file_replaced_on_a_page_without_hashes_is_installed_new(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """Nothing on a static listing pins a file: the recorded resolution of run A may not
    be reused (its page answers 304 while the file changed), pip's download decides."""
    index.serve_statically("pkg")
    _replace(index, dist_dir, "pkg", "old")
    by_pip = make_venv(py311, name="by-pip")
    assert plain_pip(by_pip, index, "pkg").returncode == 0
    summary = tmp_path / "s.json"
    first = make_venv(py311, name="a")
    args = [*index_args(index), "pkg"]
    recorded = pipfresh(
        "install", "--python", first.python, *args, env=store_env(), summary=summary
    )
    recorded.ok()
    assert flavour(first, "pkg") == "old"

    _replace(index, dist_dir, "pkg", "new")
    by_pip_again = make_venv(py311, name="by-pip-again")
    assert plain_pip(by_pip_again, index, "pkg").returncode == 0  # pip's cache is warm
    assert flavour(by_pip_again, "pkg") == "new"
    for name in ("b", "c"):
        venv = make_venv(py311, name=name)
        run = pipfresh("install", "--python", venv.python, *args, env=store_env(), summary=summary)
        run.ok()
        assert flavour(venv, "pkg") == "new", run
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        assert not run.summary["resolution"].startswith("reused"), run.summary
    assert recorded.summary is not None
    assert "not recorded: pkg" in recorded.summary["resolution"], recorded.summary


def test_a_file_replaced_on_a_page_with_hashes_heals_without_a_purge(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """The page shows the new hash, pip's HTTP cache still holds the old body (files are
    served ``immutable``): the old body is dropped, so ``pip wheel`` fetches the new one."""
    _replace(index, dist_dir, "pkg", "old")
    summary = tmp_path / "s.json"
    args = [*index_args(index), "pkg"]
    first = make_venv(py311, name="a")
    pipfresh("install", "--python", first.python, *args, env=store_env()).ok()
    assert flavour(first, "pkg") == "old"

    new = _replace(index, dist_dir, "pkg", "new")
    by_pip = make_venv(py311, name="by-pip")
    assert plain_pip(by_pip, index, "--no-cache-dir", "pkg").returncode == 0
    for name in ("b", "c"):
        venv = make_venv(py311, name=name)
        index.reset_counters()
        run = pipfresh("install", "--python", venv.python, *args, env=store_env(), summary=summary)
        run.ok()
        assert flavour(venv, "pkg") == flavour(by_pip, "pkg") == "new"
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        assert records(venv, "pkg") == records(by_pip, "pkg")
        # fetched once, then stored: the second run downloads nothing
        assert index.counters().downloads.get(new.name, 0) == (1 if name == "b" else 0)


# -- reading the pins as pip reads them ---------------------------------------------


def _item(name: str, sha: str) -> Item:
    url = f"http://127.0.0.1/files/{name}-1.0-py3-none-any.whl"
    return Item(name, "1.0", url, sha, True, True, None)


def test_pins_are_read_from_every_file_pip_reads(tmp_path: Path) -> None:
    facts = probe(Path(sys.executable), None)
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text(
        f"Foo.Bar[extra]==1.0 \\\n    --hash=sha256:{a} \\\n    --hash sha256:{b}  # two files\n"
        f"# qux==1.0 --hash=sha256:{d}\n"
        f'old==1.0 ; python_version < "3" --hash=sha256:{d}\n'
        f'old==1.0 ; python_version >= "3" --hash=sha256:{c}\n'
    )
    (tmp_path / "reqs.txt").write_text("-r sub/base.txt\n-c constraints.txt\n")
    (tmp_path / "constraints.txt").write_text(f"foo-bar==1.0 --hash=sha256:{b}\n")
    args = ["install", "-r", str(tmp_path / "reqs.txt")]
    pins = hashpins.read(args, {}, facts)
    assert pins.checking and pins.unknown is None
    assert pins.sha256 == {"foo-bar": frozenset({b}), "old": frozenset({c})}
    assert pins.refusal([_item("foo_bar", b), _item("old", c)]) is None
    assert pins.refusal([_item("foo_bar", a)]) == "foo_bar 1.0 matches none of its --hash pins"
    assert pins.refusal([_item("other", a)]) == (
        "other has no --hash (hash-checking mode): pip's to report"
    )

    plain = tmp_path / "plain.txt"
    plain.write_text("other==1.0\n")
    conf = tmp_path / "pip.conf"
    conf.write_text("[install]\nrequire_hashes = true\n")
    modes = {
        (): False,
        ("--require-hashes",): True,
        ("--require-h",): True,
    }
    for extra, expected in modes.items():
        assert hashpins.read(["-r", str(plain), *extra], {}, facts).checking is expected
    for env, expected in [
        ({"PIP_REQUIRE_HASHES": "yes"}, True),
        ({"PIP_REQUIRE_HASHES": "0"}, False),
        ({"PIP_CONFIG_FILE": str(conf)}, True),
        ({"PIP_CONFIG_FILE": str(conf), "PIP_REQUIRE_HASHES": "off"}, False),
    ]:
        assert hashpins.read(["-r", str(plain)], env, facts).checking is expected, env
    assert hashpins.read(
        ["-r", str(plain)], {"PIP_CONSTRAINT": str(tmp_path / "constraints.txt")}, facts
    ).checking
    plain.write_text(f"--no-require-hashes\nother==1.0\nfoo-bar==1.0 --hash=sha256:{a}\n")
    loose = hashpins.read(["-r", str(plain)], {}, facts)
    assert not loose.checking
    assert loose.refusal([_item("other", b), _item("foo-bar", a)]) is None
    assert loose.refusal([_item("foo-bar", b)]) is not None  # pip still checks the pin

    plain.write_text(f"./local/foo-1.0.whl --hash=sha256:{a}\n")
    assert "cannot name" in (hashpins.read(["-r", str(plain)], {}, facts).unknown or "")
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\n'
        f'[[packages]]\nname = "Foo_Bar"\nversion = "1.0"\nwheels = [{{ hashes = {{ sha256 = "{a}" }} }}]\n'
        f'sdist = {{ hashes = {{ sha256 = "{b}" }} }}\n'
        f'[[packages]]\nname = "old"\nversion = "0.1"\nmarker = \'python_version < "3"\'\n'
        f'archive = {{ hashes = {{ sha256 = "{c}" }} }}\n'
    )
    locked = hashpins.read(["-r", str(lock)], {}, facts)
    assert locked.checking and locked.sha256 == {"foo-bar": frozenset({a, b})}
    assert locked.refusal([_item("foo-bar", b)]) is None
    lock.write_text("[[packages]\n")
    assert "cannot be read" in (hashpins.read(["-r", str(lock)], {}, facts).unknown or "")
    remote = hashpins.read(["-r", "https://127.0.0.1/reqs.txt"], {}, facts)
    assert remote.refusal([]) == "--hash pins in https://127.0.0.1/reqs.txt cannot be read"
