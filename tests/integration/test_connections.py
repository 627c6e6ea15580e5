"""pipfresh's own requests go as pip's would: kept-alive connections, a bounded pool per
host, and pip's proxy; against the loopback index, counted at the server."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipfresh.resolve.pagelog import WORKERS, Page
from pipfresh.resolve.revalidate import _ACCEPT, Revalidator
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex


def _pages(index: PackageIndex, dist_dir: Path, count: int) -> list[Page]:
    """``count`` pages as a recorded resolution holds them: their ETags as served."""
    index.publish(*(build_wheel(dist_dir, f"proj{i}", "1.0") for i in range(count)))
    pages = []
    for i in range(count):
        url = f"{index.index_url}proj{i}/"
        request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
        with urllib.request.urlopen(request) as response:
            pages.append(Page(url, response.headers["ETag"]))
    return pages


def test_a_round_keeps_its_connections_alive_and_bounded(
    index: PackageIndex, dist_dir: Path
) -> None:
    pages = _pages(index, dist_dir, WORKERS + 8)
    opened = index.connections_opened
    index.reset_counters()
    revalidator = Revalidator(["--trusted-host", "127.0.0.1"], {})
    for _ in range(3):
        assert revalidator.check(pages) == []
    assert index.counters().index_304 == 3 * len(pages)
    # One request a connection would open 120; a pool per host holds at most WORKERS.
    assert index.connections_opened - opened <= WORKERS


class _Forwarding(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy: a GET of an absolute URL, forwarded; each one counted."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        sent = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        request = urllib.request.Request(self.path, headers=sent)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            response = opener.open(request)
            status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Forwarding,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("how", ["--proxy", "PIP_PROXY", "HTTP_PROXY"])
def test_the_round_goes_through_the_proxy_pip_would_use(
    index: PackageIndex, dist_dir: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pages = _pages(index, dist_dir, 3)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with _proxy() as (url, seen):
        args, env = [], {}
        if how == "--proxy":
            args = ["--proxy", url]
        elif how == "PIP_PROXY":
            env = {"PIP_PROXY": url}
        else:
            monkeypatch.setenv("HTTP_PROXY", url)  # as pip's requests reads it
        index.publish(build_wheel(dist_dir, "proj1", "2.0"))
        changes = Revalidator(args, env).check(pages)
    assert [c.page.url for c in changes] == [pages[1].url]
    assert changes[0].what == "changed" and changes[0].body and b"proj1-2.0" in changes[0].body
    assert sorted(seen) == sorted(p.url for p in pages)


def test_no_proxy_leaves_a_host_direct(
    index: PackageIndex, dist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _pages(index, dist_dir, 2)
    with _proxy() as (url, seen):
        monkeypatch.setenv("HTTP_PROXY", url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert Revalidator([], {}).check(pages) == []
    assert seen == []
