"""The HTTP server under ``PackageIndex``: a threading server on a loopback port
whose handler asks the index for each response, then writes it with the
index's latency and bandwidth and records what went out.

It tracks its connections so ``stop()`` can drop idle keep-alive ones: a
stopped index must not go on serving.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pipfresh.testing.index.counters import Record
from pipfresh.testing.index.http import Response, plain

if TYPE_CHECKING:
    from pipfresh.testing.index.core import PackageIndex

__all__ = ["Server"]


class Server(ThreadingHTTPServer):
    """Serves ``index`` until ``shutdown()``; ``close_connections()`` ends keep-alives."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], index: PackageIndex, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.index = index
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self.opened = 0  # connections accepted so far (keep-alive is seen as fewer)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
                self.opened += 1
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so nothing is served after stop()."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "pipfresh-index/1"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed requests and unsupported methods: count them as "other".
        self.close_connection = True
        resp = plain(code, "other", f"{code} {message or HTTPStatus(code).phrase}\n")
        resp.headers.append(("Connection", "close"))
        self._send(resp, head=getattr(self, "command", None) == "HEAD")

    def _serve(self, head: bool) -> None:
        index = self.server.index
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            resp = index._route(self.path, headers)
        except Exception as exc:  # a bug in the index must not hang the client
            resp = plain(HTTPStatus.INTERNAL_SERVER_ERROR, "other", f"{exc!r}\n")
        self._send(resp, head)

    def _send(self, resp: Response, head: bool) -> None:
        index = self.server.index
        index._gate(self.path, resp.kind)
        index._begin()
        sent = 0
        with_body = not head and resp.status != HTTPStatus.NOT_MODIFIED
        try:
            if index.latency > 0:
                time.sleep(index.latency)
            self.send_response(resp.status)
            for key, value in resp.headers:
                self.send_header(key, value)
            if resp.status != HTTPStatus.NOT_MODIFIED:
                self.send_header("Content-Length", str(resp.length))
            self.end_headers()
            if with_body:
                sent = self._write_body(self._chunks(resp), index.bandwidth)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            index._record(
                Record(
                    getattr(self, "command", None) or "",
                    getattr(self, "path", ""),
                    int(resp.status),
                    sent,
                    resp.kind,
                ),
                resp.filename if with_body and sent == resp.length else None,
            )

    @staticmethod
    def _chunks(resp: Response) -> Iterator[bytes]:
        if resp.file is None:
            yield resp.body
            return
        path, offset, length = resp.file
        with open(path, "rb") as fh:
            fh.seek(offset)
            while length > 0:
                chunk = fh.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
                yield chunk

    def _write_body(self, chunks: Iterator[bytes], bandwidth: float | None) -> int:
        sent = 0
        start = time.monotonic()
        piece = 1 << 16 if bandwidth is None else max(512, min(1 << 16, int(bandwidth / 20)))
        for chunk in chunks:
            for i in range(0, len(chunk), piece):
                part = chunk[i : i + piece]
                self.wfile.write(part)
                sent += len(part)
                if bandwidth is not None:
                    delay = sent / bandwidth - (time.monotonic() - start)
                    if delay > 0:
                        time.sleep(delay)
        return sent
