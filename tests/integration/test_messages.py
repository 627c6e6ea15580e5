"""What a user reads: help, warnings, refusals and summaries that say what happened and why."""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import MakeVenv, find_interpreters, python_version_of
from helpers import index_args, install, installed_version, pipfresh, store_env
from pipfresh.cache import lock
from pipfresh.errors import LockTimeout
from pipfresh.pip.args import split
from pipfresh.resolve.pagelog import Page
from pipfresh.resolve.revalidate import Revalidator
from pipfresh.store.fastpath import decide
from pipfresh.target.interpreter import Target, probe
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

# -- help -----------------------------------------------------------------------------

ENVIRONMENT = (
    "PIPFRESH_CACHE_DIR",
    "PIPFRESH_INSTALLER",
    "PIPFRESH_LINK_MODE",
    "PIPFRESH_LOCK_TIMEOUT",
)


def test_help_lists_every_pipfresh_variable() -> None:
    out = pipfresh("--help").ok().stdout
    assert [name for name in ENVIRONMENT if name not in out] == []


def test_install_help_has_pipfreshs_options_then_pips() -> None:
    out = pipfresh("install", "--help").ok().stdout
    ours, _, pips = out.partition("pip install --help")
    assert "--python" in ours and "--summary-json" in ours and "PIPFRESH_INSTALLER" in ours
    assert "--requirement" in pips  # pip's own help follows, whole


# -- --summary-json - -------------------------------------------------------------------


@pytest.mark.parametrize("installer", ["store", "pip"])
def test_summary_json_on_stdout_is_the_json_alone(
    installer: str, index: PackageIndex, dist_dir: Path, make_venv: MakeVenv
) -> None:
    """pip's own output ("Successfully installed ...") goes to stderr meanwhile."""
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    venv = make_venv()
    run = install(
        venv,
        "demo",
        "--summary-json",
        "-",
        env=store_env(PIPFRESH_INSTALLER=installer),
        index=index,
    ).ok()
    summary = json.loads(run.stdout)
    assert summary["installed"] == 1 and summary["installer"] == installer, summary
    assert "demo" in run.stderr and "pipfresh: installed 1" in run.stderr
    assert installed_version(venv.python, "demo") == "1.0"


# -- cache commands ---------------------------------------------------------------------


def test_cache_key_without_dependency_files_warns(tmp_path: Path) -> None:
    empty = pipfresh("cache", "key", cwd=tmp_path).ok()
    assert empty.stdout.startswith("key=pipfresh-")  # still a key: the job can go on
    assert "warning: no dependency files" in empty.stderr and "requirements*.txt" in empty.stderr
    (tmp_path / "requirements.txt").write_text("demo==1.0\n")
    assert pipfresh("cache", "key", cwd=tmp_path).ok().stderr == ""


@pytest.mark.parametrize("action", ["prune", "purge"])
def test_every_partition_of_an_empty_root_is_said(action: str, tmp_path: Path) -> None:
    run = pipfresh("cache", action, "--all").ok()
    assert run.stdout == (
        f"pipfresh: no partitions under {tmp_path / 'pipfresh-cache'}: nothing to {action}\n"
    )


@pytest.mark.parametrize("action", ["prune", "purge"])
def test_prune_and_purge_follow_virtual_env_and_say_so(
    action: str, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """The active venv's partition, as for an install; the line names the interpreter."""
    ours = python_version_of(Path(sys.executable))
    other = next((p for v, p in find_interpreters().items() if v != ours), None)
    if other is None:
        pytest.skip("needs a second Python version")
    venv = make_venv(other, pip=None)
    env = {**os.environ, "VIRTUAL_ENV": str(venv.path)}
    pid = Path(pipfresh("cache", "dir", env=env).ok().stdout.strip()).name
    assert pid.startswith(f"cp{python_version_of(other).replace('.', '')}-")
    line = pipfresh("cache", action, env=env).ok().stdout
    assert f" {pid}" in line and f"python {venv.python} (VIRTUAL_ENV)" in line, line
    without = pipfresh("cache", action).ok().stdout  # no venv active: pipfresh's interpreter
    assert pid not in without and "(pipfresh's interpreter)" in without, without


# -- the cache root ---------------------------------------------------------------------


def test_commands_that_need_no_cache_run_on_a_broken_root(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-directory"
    broken.write_text("")
    env = {**os.environ, "PIPFRESH_CACHE_DIR": str(broken)}
    listed = pipfresh("list", "--format=json", env=env).ok()
    assert "pipfresh" in {row["name"] for row in json.loads(listed.stdout)}
    assert pipfresh("show", "pipfresh", env=env).ok().stdout.startswith("Name: pipfresh")
    refused = pipfresh("download", "demo", env=env)  # needs the cache: one line, exit 2
    assert refused.code == 2 and "is not a directory" in refused.stderr


def test_store_decision_says_the_cache_is_unusable_not_none_given(tmp_path: Path) -> None:
    target = Target(Path(sys.executable), "--python", probe(Path(sys.executable), None))
    unusable = decide("install", split(["demo"]), target, None, {})
    assert unusable.installer == "pip" and unusable.reason == "the managed cache is unusable"
    chosen = decide("install", split(["--no-cache-dir", "demo"]), target, None, {})
    assert chosen.reason == "--no-cache-dir given"


# -- locks ------------------------------------------------------------------------------


def test_lock_timeout_wording(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    for held, wanted, said in ((True, False, "an exclusive"), (False, True, "a shared")):
        with (
            lock.hold(path, shared=held, timeout=0),
            pytest.raises(LockTimeout, match=f"waiting for {said} lock on"),
            lock.hold(path, shared=wanted, timeout=0),
        ):
            pass


# -- pip lock ---------------------------------------------------------------------------


def test_pip_lock_on_a_pip_without_it_names_the_pip_it_needs(make_venv: MakeVenv) -> None:
    venv = make_venv(pip="24.3.1")
    run = pipfresh("lock", "--python", venv.python, "demo")
    assert run.code == 2, run
    assert run.stderr == (
        "pipfresh: error: pip lock needs pip >= 25.1, and this run has the target's pip "
        "24.3.1: upgrade the target's pip (python -m pip install --upgrade pip)\n"
    )


# -- revalidating a recorded resolution ------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers with the status the path starts with (``/500/``), drops the connection for
    ``/drop/``, and answers 500 to anything else (an index that has gone wrong)."""

    def do_GET(self) -> None:
        what = self.path.strip("/").split("/")[0]
        if what == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(int(what) if what.isdigit() else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _answering(port: int = 0) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/304/", None),
        ("/200/", "changed"),
        ("/404/", "changed"),
        ("/500/", "could not be revalidated (HTTP 500)"),
        ("/503/", "could not be revalidated (HTTP 503)"),
        ("/401/", "could not be revalidated (HTTP 401)"),
        ("/drop/", "could not be revalidated (Remote end closed connection without response)"),
    ],
)
def test_a_failed_revalidation_is_not_called_a_change(path: str, said: str | None) -> None:
    with _answering() as base:
        page = Page(base + path, etag='"e"')
        count, first = Revalidator([], {}).all_unchanged([page])
    assert (count, first) == ((1, None) if said is None else (0, f"{page.url} {said}"))


def test_an_index_that_is_down_is_not_called_a_change() -> None:
    page = Page(f"http://127.0.0.1:{_closed_port()}/simple/rich/", etag='"e"')
    _count, first = Revalidator([], {}).all_unchanged([page])
    assert first == f"{page.url} could not be revalidated (Connection refused)"


def test_summary_says_the_index_could_not_be_revalidated(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    """The index answers 500 on the next run: pip fails, and the summary does not say the
    page changed."""
    index.publish(build_wheel(dist_dir, "demo", "1.0"))
    args = ["install", *index_args(index), "demo", "--retries", "0"]
    first = pipfresh(*args, "--python", make_venv().python, summary=tmp_path / "s.json").ok()
    assert first.summary is not None and first.summary["resolution"].startswith("pip (recorded")
    page, port = f"{index.index_url}demo/", index.port
    index.stop()
    with _answering(port):
        failed = pipfresh(*args, "--python", make_venv().python, summary=tmp_path / "s.json")
    assert failed.code != 0 and failed.summary is not None
    assert failed.summary["resolution"] == f"pip ({page} could not be revalidated (HTTP 500))"
