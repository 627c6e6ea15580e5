"""Reusing the last resolution: only when every page it read is unchanged and the inputs
are identical; a version published a second ago is still installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import helpers
from conftest import MakeVenv
from helpers import index_args, installed_version, pipfresh, store_env
from pipfresh.layout import FINGERPRINT
from pipfresh.pip.args import option_values
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


class Installs:
    """``pipfresh install`` into a fresh venv each time, returning the summary."""

    def __init__(self, make_venv: Any, python: Path, pip: str, tmp_path: Path) -> None:
        self.make_venv, self.python, self.pip, self.tmp = make_venv, python, pip, tmp_path
        self.venv: Any = None

    def __call__(self, *args: str | Path, fresh: bool = True, **env: str) -> dict[str, Any]:
        if fresh or self.venv is None:
            if self.venv is not None:
                shutil.rmtree(self.venv.path)
            self.venv = self.make_venv(self.python, pip=self.pip, name="env")
        run = pipfresh(
            "install",
            "--python",
            self.venv.python,
            *args,
            env=store_env(**env),
            summary=self.tmp / "s.json",
        ).ok()
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        return run.summary


@pytest.mark.parametrize("pip_version", ["23.0.1", "26.3"])
def test_unchanged_pages_reuse_the_resolution_and_a_new_version_is_still_seen(
    pip_version: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    install = Installs(make_venv, py311, pip_version, tmp_path)
    first = install(*index_args(index), "app")
    assert first["resolution"] == "pip (recorded 2 index pages)", first

    index.reset_counters()
    second = install(*index_args(index), "app")
    assert second["resolution"] == "reused: 2 index pages unchanged", second
    counters = index.counters()
    # Only the two conditional requests: no pip resolution, no metadata, no file.
    assert sorted(r.path for r in counters.records) == ["/simple/app/", "/simple/lib/"]
    assert {r.status for r in counters.records} == {304}
    assert installed_version(install.venv.python, "lib") == "1.0"

    index.publish(build_wheel(dist_dir, "lib", "1.1"))  # inside the pages' max-age
    third = install(*index_args(index), "app")
    assert third["resolution"].startswith("pip (http://"), third
    assert "/simple/lib/ changed" in third["resolution"]
    assert installed_version(install.venv.python, "lib") == "1.1"

    fourth = install(*index_args(index), "app")
    assert fourth["resolution"] == "reused: 2 index pages unchanged", fourth
    assert installed_version(install.venv.python, "lib") == "1.1"
    assert installed_version(install.venv.python, "app") == "1.0"


def test_changed_inputs_or_target_resolve_again(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "app", "1.0"), build_wheel(dist_dir, "app", "2.0"))
    reqs = tmp_path / "requirements.txt"
    nested = tmp_path / "pins.txt"
    reqs.write_text("-c pins.txt\napp\n")
    nested.write_text("app==1.0\n")
    install = Installs(make_venv, py311, "26.3", tmp_path)
    assert install(*index_args(index), "-r", reqs)["resolution"].startswith("pip (recorded")
    assert install(*index_args(index), "-r", reqs)["resolution"].startswith("reused")

    nested.write_text("app==2.0\n")  # an included constraint file changed
    assert install(*index_args(index), "-r", reqs)["resolution"].startswith("pip (recorded")
    assert installed_version(install.venv.python, "app") == "2.0"

    # The same inputs into a target that already has app: pip decides again (and reads no
    # page: nothing to revalidate, so nothing is recorded).
    again = install(*index_args(index), "-r", reqs, fresh=False)
    assert again["resolution"] == "pip (pip read no index page)" and again["installed"] == 0, again

    env_changed = install(*index_args(index), "-r", reqs, PIP_PRE="1")
    assert env_changed["resolution"].startswith("pip (recorded"), env_changed


def test_a_page_missing_from_one_index_must_stay_missing(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = PackageIndex(other_dir)
    other.start()
    try:
        index.publish(build_wheel(dist_dir, "app", "1.0"))
        other.publish(build_wheel(other_dir, "private", "1.0"))
        args = [*index_args(index), "--extra-index-url", other.index_url, "app", "private"]
        install = Installs(make_venv, py311, "26.3", tmp_path)
        assert install(*args)["resolution"] == "pip (recorded 4 index pages)"
        assert install(*args)["resolution"] == "reused: 4 index pages unchanged"

        # The main index starts serving a newer "private": the resolution changes.
        index.publish(build_wheel(dist_dir, "private", "2.0"))
        third = install(*args)
        assert "/simple/private/ changed" in third["resolution"], third
        assert installed_version(install.venv.python, "private") == "2.0"
    finally:
        other.stop()


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--find-links", "{dists}"], "--find-links (local listings cannot be revalidated)"),
        (["--uploaded-prior-to", "2099-01-01T00:00:00Z"], "an upload cut-off can move with time"),
        (["--log", "{tmp}/pip.log"], "--log given"),
    ],
)
def test_what_cannot_be_revalidated_is_never_reused(
    extra: list[str],
    why: str,
    index: PackageIndex,
    dist_dir: Path,
    make_venv: MakeVenv,
    py311: Path,
    tmp_path: Path,
) -> None:
    index.publish(build_wheel(dist_dir, "app", "1.0"))
    args = [a.format(dists=dist_dir, tmp=tmp_path) for a in extra]
    install = Installs(make_venv, py311, "26.3", tmp_path)
    for _ in range(2):
        summary = install(*index_args(index), *args, "app")
        assert summary["resolution"] == f"pip ({why}: not reusable)", summary
    assert installed_version(install.venv.python, "app") == "1.0"


def test_a_damaged_record_is_ignored_and_rewritten(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "app", "1.0"))
    install = Installs(make_venv, py311, "26.3", tmp_path)
    install(*index_args(index), "app")
    records = list(
        Path(os.environ["PIPFRESH_CACHE_DIR"]).glob(
            "partitions-v1/*/pipfresh/resolutions-v1/*.json"
        )
    )
    assert len(records) == 1
    data = json.loads(records[0].read_text())
    assert [p["url"] for p in data["pages"]] == [f"{index.index_url}app/"]
    records[0].write_text(records[0].read_text()[:40])  # a run killed mid-write elsewhere
    assert install(*index_args(index), "app")["resolution"].startswith("pip (recorded")
    assert install(*index_args(index), "app")["resolution"].startswith("reused")

    # A venv elsewhere with the same interpreter and contents, and another cache
    # directory holding a copy of the records: the same resolution.
    copy = tmp_path / "copied-cache"
    shutil.copytree(os.environ["PIPFRESH_CACHE_DIR"], copy, symlinks=True)
    elsewhere = make_venv(py311, name="elsewhere")
    run = helpers.install(
        elsewhere, "app",
        env=store_env(PIPFRESH_CACHE_DIR=str(copy)), summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["resolution"].startswith("reused"), run.summary


def test_what_the_inputs_and_the_log_say(tmp_path: Path) -> None:
    """Nested files count, local listings and credentials are refused, pip's log is read."""
    from pipfresh.resolve import pagelog, reuse

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("app\n--constraint=pins.txt\n")
    (tmp_path / "sub" / "pins.txt").write_text("app==1\n")
    (tmp_path / "reqs.txt").write_text("-r sub/base.txt\nlib\n")
    files = reuse._input_files(["-r", str(tmp_path / "reqs.txt")], {})
    assert [f.name for f in files] == ["reqs.txt", "base.txt", "pins.txt"]
    assert list(
        option_values(["-rA", "--requirement=B", "-c", "C", "x"], {"-r", "-c", "--requirement"})
    ) == ["A", "B", "C"]
    (tmp_path / "local.txt").write_text("--find-links ./wheels\napp\n")
    with pytest.raises(reuse._Unsupported, match="find-links"):
        reuse._input_files(["-r", str(tmp_path / "local.txt")], {})
    assert reuse._unsupported(["-f", "dir"], {}) == "-f (local listings cannot be revalidated)"
    assert reuse._unsupported([], {"PIP_FIND_LINKS": "x"}) == "PIP_FIND_LINKS is set"
    assert reuse._without_report(["install", "--report", "r.json", "--report=x", "app"]) == [
        "install",
        "app",
    ]

    log = tmp_path / "pip.log"
    log.write_text(
        "2026-11-21T08:48:23,139 Fetching project page and analyzing links: https://u:****@h/simple/a/\n"
    )
    assert pagelog.pages_from_log(log, tmp_path) == ([], "an index URL carries credentials")
    log.write_text(
        "x Fetching project page and analyzing links: http://h/simple/a/\n"
        "x Could not fetch URL http://h/simple/a/: 404 Client Error: Not Found for url: ...\n"
    )
    assert pagelog.pages_from_log(log, tmp_path) == (
        [pagelog.Page("http://h/simple/a/", missing=True)],
        None,
    )
    log.write_text("x Looking in links: /wheels\n")
    assert (
        pagelog.pages_from_log(log, tmp_path)[1]
        == "find-links (local listings cannot be revalidated)"
    )


def test_the_store_is_checked_while_the_pages_are_revalidated(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, py311: Path, tmp_path: Path
) -> None:
    """A restored cache: every stored file's stat changed, so each is hashed again. That
    work (and the stat of every file) is done while the index answers, not after."""
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib>=1"]),
        build_wheel(dist_dir, "lib", "1.0"),
    )
    install = Installs(make_venv, py311, "26.3", tmp_path)
    install(*index_args(index), "app")
    root = Path(os.environ["PIPFRESH_CACHE_DIR"])
    records = sorted(root.rglob(FINGERPRINT))
    assert len(records) == 2, records
    for entry in records:
        for path in (entry.parent / "tree").rglob("*"):
            os.chmod(path, os.lstat(path).st_mode)  # the same mode, a new ctime: as a restore
    before = {r: r.stat().st_mtime_ns for r in records}
    venv = make_venv(py311, pip="26.3", name="held")
    argv = [sys.executable, "-m", "pipfresh", "install", "--python", str(venv.python)]
    argv += [*index_args(index), "app", "--summary-json", str(tmp_path / "held.json")]
    index.hold()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert index.wait_held(2, timeout=120), index.held_paths()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            r.stat().st_mtime_ns == before[r] for r in records
        ):
            time.sleep(0.05)
        rechecked = [r for r in records if r.stat().st_mtime_ns != before[r]]
        assert index.held_paths(), "the pages were answered already"
    finally:
        index.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert rechecked == records, "the entries were not checked while the pages were held"
    summary = json.loads((tmp_path / "held.json").read_text())
    assert summary["resolution"] == "reused: 2 index pages unchanged", summary
    assert summary["installer_reason"] == "2 from the store (2 re-verified by hash), 0 added"
    assert installed_version(venv.python, "lib") == "1.0"
