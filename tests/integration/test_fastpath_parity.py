"""The store installer ends where pip ends: same files, RECORD, scripts, metadata, bytecode.

Purpose-built wheels cover data files, headers, scripts (``#!python`` and not),
console and GUI entry points, ``.pth`` files, a namespace package split over two
wheels and a purelib/platlib split. Each test installs the same wheels once with
real pip and once from the store, into venvs of the same path length, and
compares the two trees byte for byte (paths to the venv normalised) and each
``.pyc``'s code objects but their ``co_filename`` (which must name the source).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

import helpers
from conftest import MakeVenv
from helpers import index_args, store_env
from pipfresh.layout import STORE_LAYOUT
from pipfresh.store import install
from pipfresh.store.entries import Compiler, Store
from pipfresh.target.interpreter import probe
from pipfresh.testing.dists import build_wheel, native_tag
from pipfresh.testing.index import PackageIndex

# -- purpose-built wheels ----------------------------------------------------------------

_CLI = '''"""Entry points of the fancy test distribution."""

import sys


def main():
    print("fancy console", len(sys.argv) - 1)
    return 0


def gui():
    print("fancy gui")
    return 0
'''


def _with_exec_bits(wheel: Path, executable: set[str]) -> Path:
    """Rewrite ``wheel`` so ``executable`` members carry 0o755, as build backends set it."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            if info.filename in executable:
                info.external_attr = (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, data)
    return wheel


def fancy_wheels(out: Path, python: Path) -> list[Path]:
    """The parity workload: every wheel feature pip handles, in four wheels (one of them
    tagged for ``python`` alone)."""
    data = "fancy-1.0.data"
    fancy = build_wheel(
        out,
        "fancy",
        "1.0",
        requires=["nsp-one", "nsp-two", "native-bits"],
        modules={
            "fancy/__init__.py": '"""fancy."""\n__version__ = "1.0"\n',
            "fancy/cli.py": _CLI,
            "fancy/sub/__init__.py": "",
            "fancy/sub/deep.py": "VALUE = 42\n",
            "fancy/broken_syntax.py": "def oops(:\n",  # pip skips what does not compile
            "fancy_path_hook.pth": "import sys; sys.fancy_hooked = True\n",
        },
        entry_points={
            "console_scripts": {"fancy": "fancy.cli:main"},
            "gui_scripts": {"fancy-gui": "fancy.cli:gui"},
        },
        extra_files={
            f"{data}/data/share/fancy/readme.txt": b"fancy data file\n",
            f"{data}/data/share/fancy/helper.py": b"HELPER = 1\n",
            f"{data}/headers/fancy.h": b"#define FANCY 1\n",
            f"{data}/scripts/fancy-tool": b"#!python\nimport fancy\nprint('tool', fancy.__version__)\n",
            f"{data}/scripts/fancy-sh": b"#!/bin/sh\necho fancy-sh\n",
            f"{data}/scripts/fancy_helper.py": b"#!python\nprint('helper')\n",  # pip compiles it
            f"{data}/scripts/fancy": b"#!python\n# a setuptools wrapper pip skips\n",
            f"{data}/purelib/fancy_extra/__init__.py": b"EXTRA = 'purelib'\n",
            # A build's leftover (numpy 2.2's cp310/cp311 wheels ship one): pip writes
            # it, then compiles cli.py over it; RECORD keeps the wheel's row and adds its own.
            "fancy/__pycache__/cli.cpython-311.pyc": b"stale bytecode a build left behind",
        },
    )
    _with_exec_bits(fancy, {f"{data}/scripts/fancy-tool", f"{data}/scripts/fancy-sh"})
    one = build_wheel(out, "nsp-one", "1.0", modules={"nsp/one/__init__.py": "ONE = 1\n"})
    two = build_wheel(out, "nsp-two", "2.0", modules={"nsp/two/__init__.py": "TWO = 2\n"})
    native = build_wheel(
        out,
        "native-bits",
        "0.5",
        pure=False,
        tag=native_tag(python),
        modules={"native_bits/__init__.py": "PLAT = 'platlib'\n"},
        extra_files={"native_bits-0.5.data/purelib/native_pure/__init__.py": b"PURE = 1\n"},
    )
    return [fancy, one, two, native]


IMPORTS = ["fancy", "fancy.cli", "fancy.sub.deep", "fancy_extra", "nsp.one", "nsp.two",
           "native_bits", "native_pure"]  # fmt: skip
NAMES = ["fancy", "nsp-one", "nsp-two", "native-bits"]


# -- comparing trees ------------------------------------------------------------------------


def tree(venv: Any) -> dict[str, tuple[int, bytes]]:
    """Every file of the venv: mode and contents with the venv's path normalised.

    Bytecode holds its source's mtime, so for ``.pyc`` only presence is compared. A file
    linked from the store is read-only (store entries are immutable): it is compared
    with the write bits pip's own file has (``umask``).
    """
    mask = os.umask(0)
    os.umask(mask)
    root = str(venv.path)
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = (0, os.readlink(full).replace(root, "<VENV>").encode())
                continue
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode) | (0o222 & ~mask if st.st_nlink > 1 else 0)
            data = b"" if name.endswith(".pyc") else Path(full).read_bytes()
            out[rel] = (mode, data.replace(root.encode(), b"<VENV>"))
    return out


def assert_same_tree(
    expected: dict[str, tuple[int, bytes]], got: dict[str, tuple[int, bytes]]
) -> None:
    only_pip = sorted(set(expected) - set(got))
    only_store = sorted(set(got) - set(expected))
    assert not only_pip and not only_store, (
        f"only after pip: {only_pip}\nonly after store: {only_store}"
    )
    differ = [p for p in expected if expected[p] != got[p]]
    details = [f"{p}: pip {expected[p]!r}\n   store {got[p]!r}" for p in differ[:5]]
    assert not differ, "files differ:\n" + "\n".join(details)


def assert_records_valid(venv: Any) -> int:
    """Every RECORD row names an existing file whose hash and size match; returns rows checked."""
    site = Path(probe(venv.python, None).purelib or "")
    checked = 0
    for record in site.glob("*.dist-info/RECORD"):
        with open(record, newline="", encoding="utf-8") as fp:
            for path, digest, size in csv.reader(fp):
                full = site / path
                if ".data/" in path and not full.exists():
                    continue  # pip keeps the row of a setuptools wrapper it skipped
                assert full.exists(), f"{record}: {path} is missing"
                if digest and not path.endswith(".pyc"):  # a shipped .pyc pip recompiled
                    algo, value = digest.split("=", 1)
                    data = full.read_bytes()
                    raw = hashlib.new(algo, data).digest()
                    assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == value, path
                    assert int(size) == len(data), path
                checked += 1
    return checked


_METADATA_DUMP = """
import importlib.metadata as m, json, sys
out = {}
for d in m.distributions():
    out[d.metadata["Name"]] = {
        "version": d.version,
        "files": sorted(str(f) for f in (d.files or [])),
        "metadata": sorted(d.metadata.items()),
        "entry_points": sorted((e.group, e.name, e.value) for e in d.entry_points),
        "requires": d.requires,
        "installer": d.read_text("INSTALLER"),
        "requested": d.read_text("REQUESTED"),
        "direct_url": d.read_text("direct_url.json"),
    }
print(json.dumps(out, sort_keys=True).replace(sys.prefix, "<VENV>"))
"""


def metadata(venv: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(venv.run("-c", _METADATA_DUMP).stdout)
    return result


# Runs under the venv: every .pyc's header (but the source mtime), its code objects with
# every attribute but co_filename (recursively), the source it caches and the names its
# code objects give as their file.
_BYTECODE_DUMP = r"""
import importlib.util, json, marshal, os, sys, warnings
warnings.simplefilter("ignore")  # co_lnotab is deprecated, still compared
CODE = type(compile("", "", "exec"))

def shape(value):
    if isinstance(value, CODE):
        names = [n for n in dir(value) if n.startswith("co_") and n != "co_filename"]
        return {n: shape(getattr(value, n)) for n in sorted(names)
                if not callable(getattr(value, n))}
    if isinstance(value, (tuple, list)):
        return [shape(v) for v in value]
    if isinstance(value, frozenset):  # marshalled in its compiler's set order
        return sorted(repr(v) for v in value)
    return repr(value)

def filenames(code):
    yield code.co_filename
    for const in code.co_consts:
        if isinstance(const, CODE):
            yield from filenames(const)

out = {}
for dirpath, _dirs, names in os.walk(sys.argv[1]):
    for name in names:
        if name.endswith(".pyc"):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fp:
                data = fp.read()
            code = marshal.loads(data[16:])
            out[os.path.relpath(path, sys.argv[1])] = {
                "header": data[:8].hex() + data[12:16].hex(),
                "code": shape(code),
                "source": importlib.util.source_from_cache(path),
                "filenames": sorted(set(filenames(code))),
            }
print(json.dumps(out))
"""


def bytecode(venv: Any) -> dict[str, Any]:
    """Every ``.pyc`` of the venv: its header, its code objects, their file names."""
    result: dict[str, Any] = json.loads(venv.run("-c", _BYTECODE_DUMP, venv.path).stdout)
    return result


def assert_names_its_source(dump: dict[str, Any]) -> None:
    """Each code object names the source its ``.pyc`` caches: absolute (pip's), or relative
    to the directory the source was installed into (the store's, one ``.pyc`` for every
    target): never a path that does not exist."""
    assert dump, "no bytecode at all"
    for pyc, found in dump.items():
        source = found["source"]
        assert os.path.isfile(source), f"{pyc} caches a missing {source}"
        for name in found["filenames"]:
            relative = not os.path.isabs(name) and source.endswith(os.sep + name)
            same = os.path.isabs(name) and os.path.realpath(name) == os.path.realpath(source)
            assert same or relative, f"{pyc} names {name}, not {source}"


def assert_same_bytecode(expected: dict[str, Any], got: dict[str, Any]) -> None:
    assert sorted(got) == sorted(expected)
    differ = [p for p in expected if (expected[p]["header"], expected[p]["code"])
              != (got[p]["header"], got[p]["code"])]  # fmt: skip
    assert not differ, f"bytecode differs from pip's: {differ[:5]}"
    assert_names_its_source(expected)
    assert_names_its_source(got)


def pyc_state(venv: Any) -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns
        for p in Path(venv.path).rglob("*.pyc")
        if "site-packages/pip/" not in str(p)
    }


def assert_behaves(venv: Any) -> None:
    """Scripts run, modules import without writing bytecode, the .pth ran, pip check is clean."""
    assert venv.run("-c", "import sys; assert sys.fancy_hooked").returncode == 0
    before = pyc_state(venv)
    code = f"import importlib\nfor m in {IMPORTS!r}: importlib.import_module(m)"
    venv.run("-c", code)
    assert pyc_state(venv) == before, "importing wrote bytecode: the stored .pyc was not valid"
    scripts = venv.bin
    import subprocess

    def run(*argv: str | Path) -> str:
        return subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, check=True
        ).stdout

    assert run(scripts / "fancy", "a", "b") == "fancy console 2\n"
    assert run(scripts / "fancy-gui") == "fancy gui\n"
    assert run(scripts / "fancy-tool") == "tool 1.0\n"
    assert run(scripts / "fancy-sh") == "fancy-sh\n"
    venv.pip("check")


# -- stage 1: store + installer, driven directly -----------------------------------------


@pytest.fixture
def py311(interpreters: dict[str, Path]) -> Path:
    if "3.11" not in interpreters:
        pytest.skip("needs Python 3.11")
    return interpreters["3.11"]


@dataclass
class EndState:
    """A target after an install: its files, its metadata as Python sees it, ``pip list``."""

    files: dict[str, tuple[int, bytes]]
    metadata: dict[str, Any]  # REQUESTED included
    pip_list: str
    bytecode: dict[str, Any]

    @classmethod
    def of(cls, venv: Any) -> EndState:
        pip_list = venv.pip("list", "--format=json").stdout
        return cls(tree(venv), metadata(venv), pip_list, bytecode(venv))


def assert_same_end_state(expected: EndState, venv: Any) -> None:
    got = EndState.of(venv)
    assert_same_tree(expected.files, got.files)
    assert got.metadata == expected.metadata
    assert got.pip_list == expected.pip_list
    assert_same_bytecode(expected.bytecode, got.bytecode)


def reinstalled_venv(make_venv: Any, python: Path, venv: Any, **kwargs: Any) -> Any:
    """A fresh venv at the same path: scripts and RECORD hashes then compare byte for byte."""
    shutil.rmtree(venv.path)
    return make_venv(python, name=venv.path.relative_to(venv.path.parents[0]).as_posix(), **kwargs)


def test_store_install_matches_pip(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    wheels = fancy_wheels(dist_dir, py311)
    index.publish(*wheels)
    venv = make_venv(py311, name="env")
    venv.pip("install", *index_args(index), "fancy")
    by_pip = EndState.of(venv)

    venv = reinstalled_venv(make_venv, py311, venv)
    clean = tree(venv)
    facts = probe(venv.python, None)
    store = Store(tmp_path / STORE_LAYOUT)
    digests = {hashlib.sha256(w.read_bytes()).hexdigest(): w for w in wheels}
    entries = store.add(digests, Compiler(venv.python))
    assert sorted(entries) == sorted(digests)
    scheme = install.TargetScheme.for_venv(facts)
    for sha, wheel in digests.items():
        name = wheel.name.split("-")[0].replace("_", "-")
        request = install.Request(entries[sha], name, name == "fancy", None)
        install.install(
            request,
            scheme,
            str(venv.python),
            install.script_template(Version("26.3")),
            install.HardLinker(),
        )

    assert_same_end_state(by_pip, venv)
    assert assert_records_valid(venv) > 20
    assert_behaves(venv)

    venv.pip("uninstall", "--yes", *NAMES)
    assert sorted(set(tree(venv)) - set(clean)) == [], "pip uninstall left files behind"


def test_edit_in_a_target_never_reaches_the_next_target(
    dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """Files are hardlinked: an in-place edit changes the stored inode, so the entry is
    verified on lookup (its stat against the fingerprint, then its content), discarded
    and added again."""
    wheel = build_wheel(dist_dir, "edited", "1.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = Store(tmp_path / STORE_LAYOUT)
    first = make_venv(py311, pip=None, name="first")
    facts = probe(first.python, None)
    compiler = Compiler(first.python)
    entry = store.add({sha: wheel}, compiler)[sha]
    template = install.script_template(Version("26.3"))

    def put(venv: Any) -> Path:
        found = store.lookup(sha) or store.add({sha: wheel}, compiler)[sha]
        scheme = install.TargetScheme.for_venv(probe(venv.python, None))
        request = install.Request(found, "edited", True, None)
        install.install(request, scheme, str(venv.python), template, install.HardLinker())
        return Path(scheme.purelib) / "edited" / "__init__.py"

    module = put(first)
    stored_file = Path(entry.file("edited/__init__.py"))
    assert os.path.samefile(module, stored_file)  # really linked
    assert module.stat().st_mode & 0o222 == 0  # read-only: an editor says so first
    module.chmod(0o644)  # forced (root needs not)
    with open(module, "a") as fp:  # an editor writing in place
        fp.write("BROKEN = True\n")
    assert store.lookup(sha) is None  # the change is seen, the entry dropped

    second = make_venv(py311, pip=None, name="second")
    assert "BROKEN" not in put(second).read_text()
    assert "BROKEN" in module.read_text()  # the first target keeps its own edit
    assert facts.is_venv


def test_copy_mode_keeps_bytecode_valid(
    dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(dist_dir, "copied", "1.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    venv = make_venv(py311, pip=None)
    store = Store(tmp_path / STORE_LAYOUT)
    entry = store.add({sha: wheel}, Compiler(venv.python))[sha]
    scheme = install.TargetScheme.for_venv(probe(venv.python, None))
    linker = install.linker_from_env({install.LINK_MODE_ENV: "copy"})
    request = install.Request(entry, "copied", True, None)
    install.install(
        request, scheme, str(venv.python), install.script_template(Version("26.3")), linker
    )
    module = Path(scheme.purelib) / "copied" / "__init__.py"
    assert not os.path.samefile(module, entry.file("copied/__init__.py"))
    pyc = next((module.parent / "__pycache__").glob("*.pyc"))
    mtime = pyc.stat().st_mtime_ns
    venv.run("-c", "import copied")
    assert pyc.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("setuptools", ["dependency", "requested"])
def test_setuptools_is_requested_only_when_asked_for(
    setuptools: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    """pipfresh installs setuptools with a short ``pip install`` of its own, which asks
    for it by name: its ``.dist-info`` must still be pip's, REQUESTED (and its RECORD row)
    only when the user asked for it."""
    setuptools_files = {"setuptools/__init__.py": "OURS = 1\n"}
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["setuptools"]),
        build_wheel(dist_dir, "setuptools", "99.0", modules=setuptools_files),
    )
    wanted = ["app", *(["setuptools"] if setuptools == "requested" else [])]

    def dist_info(venv: Any) -> dict[str, tuple[int, bytes]]:
        found = tree(venv)
        return {k: v for k, v in found.items() if "setuptools-99.0.dist-info" in k}

    venv = make_venv(py311, name="env")
    venv.pip("install", *index_args(index), "--cache-dir", tmp_path / "pip-cache", *wanted)
    by_pip = dist_info(venv)
    requested = any(k.endswith("/REQUESTED") for k in by_pip)
    assert requested == (setuptools == "requested")

    venv = reinstalled_venv(make_venv, py311, venv)
    run = helpers.install(
        venv, *wanted,
        env=store_env(), summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert_same_tree(by_pip, dist_info(venv))


# -- stage 2: pipfresh as a user runs it, against pip itself ------------------------------


def graph_wheels(out: Path) -> list[Path]:
    """A dependency graph whose installation order and names only pip's rules give: names
    spelled otherwise than their metadata, an extra, Requires-Python, markers, a cycle, a
    dependency already installed (``zeta``) and setuptools as a dependency."""
    top = ["Fancy", "Mid_One", "mid-two[extra]", "leaf-a", "cyc-a", "x-user", "solo"]
    two = ["leaf-c", 'leaf-d; extra == "extra"', 'leaf-e; python_version < "3"']
    setuptools = {"setuptools/__init__.py": "OURS = 1\n"}
    return [
        build_wheel(out, "Top-App", "1.0", requires=top),
        build_wheel(
            out, "mid-one", "1.0", requires=["Leaf_B", "setuptools"], requires_python=">=3"
        ),
        build_wheel(out, "mid-two", "2.0", extras=["extra"], requires=two),
        build_wheel(out, "x-user", "1.0", requires=["mid-two[extra]"]),
        build_wheel(out, "solo", "1.0", requires=["zeta"]),
        *(build_wheel(out, f"leaf-{c}", "1.0") for c in "abcde"),
        build_wheel(out, "cyc-a", "1.0", requires=["cyc-b"]),
        build_wheel(out, "cyc-b", "1.0", requires=["cyc-a", "leaf-a"]),
        build_wheel(out, "setuptools", "99.0", modules=setuptools),
    ]


_NOT_COMPARED = ("Downloading ", "Using cached ", "Obtaining ")


def console(stdout: str) -> list[str]:
    """pip's stdout but its download lines (pip's real install downloads the files whose
    metadata alone its dry run, pipfresh's, read)."""
    return [line for line in stdout.splitlines() if not line.lstrip().startswith(_NOT_COMPARED)]


def test_pipfresh_install_ends_and_speaks_as_pip(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """The same install by pip and by pipfresh (the store, and setuptools, a dependency,
    through its short ``pip install``), then the same ``--force-reinstall`` and ``-q`` one:
    same files (headers under the name pip spells), RECORD, REQUESTED, bytecode, and
    console lines: pip's order, names and ``Attempting uninstall`` blocks, once."""
    index.publish(*fancy_wheels(dist_dir, py311), *graph_wheels(dist_dir))
    zeta = build_wheel(dist_dir, "zeta", "1.0")
    index.publish(zeta)
    wanted = ["top_app"]
    reinstall = ["--force-reinstall", *wanted]

    def installs(venv: Any, install: Any) -> list[list[str]]:
        venv.pip("install", "--no-index", "--no-deps", zeta)
        said = [console(install(*wanted)), console(install(*reinstall))]
        return [*said, console(install("-q", *reinstall))]

    venv = make_venv(py311, name="env")
    cache = tmp_path / "pip-cache"
    by_pip = installs(
        venv, lambda *a: venv.pip("install", *index_args(index), "--cache-dir", cache, *a).stdout
    )
    pip_state = EndState.of(venv)
    assert pip_state.metadata["setuptools"]["requested"] is None

    venv = reinstalled_venv(make_venv, py311, venv)

    def by_pipfresh(*args: str) -> str:
        summary = tmp_path / "summary.json"
        run = helpers.install(venv, *args,
                       env=store_env(), summary=summary, index=index).ok()  # fmt: skip
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        return run.stdout

    said = installs(venv, by_pipfresh)
    assert_same_end_state(pip_state, venv)
    assert said[0] == by_pip[0]  # Collecting..., Installing collected packages, Successfully
    assert said[1] == by_pip[1]  # and each "Attempting uninstall", setuptools' too
    assert said[2] == by_pip[2] == []


def test_a_reused_resolution_says_what_pip_says(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """No dry run, no ``Collecting`` lines to read the names from: they were recorded with
    the resolution. pip's lines, in pip's order, all the same."""
    index.publish(
        build_wheel(dist_dir, "Demo-App", "1.0", requires=["Dep_Lib"]),
        build_wheel(dist_dir, "dep-lib", "1.0"),
    )
    venv = make_venv(py311, name="env")
    by_pip = console(
        venv.pip("install", *index_args(index), "--cache-dir", tmp_path / "c", "demo_app").stdout
    )
    assert by_pip[-3:] == [
        "Installing collected packages: Dep_Lib, demo_app",
        "",
        "Successfully installed Dep_Lib-1.0 demo_app-1.0",
    ]
    for round_ in ("resolved", "reused"):
        venv = reinstalled_venv(make_venv, py311, venv)
        run = helpers.install(
            venv, "demo_app",
            env=store_env(), summary=tmp_path / "s.json", index=index,
        ).ok()  # fmt: skip
        assert run.summary is not None
        assert run.summary["resolution"].startswith("reused" if round_ == "reused" else "pip")
        assert console(run.stdout)[-3:] == by_pip[-3:]
