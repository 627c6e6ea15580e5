"""``PackageIndex``: the index's state (its root, the ways projects are served,
holds and counters) and its routes, on a server it starts and stops.

Everything a response says is decided in ``responses`` and ``pages`` from what
``files`` reads; this class only keeps state and picks the route.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import stat
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType, TracebackType
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from pipfresh.testing.index.counters import KINDS, Counters, Record
from pipfresh.testing.index.files import DistFile, parse_dist_filename, read_dist
from pipfresh.testing.index.http import Response, negotiate, not_found, plain, redirect
from pipfresh.testing.index.pages import render_project, render_root
from pipfresh.testing.index.responses import (
    file_response,
    metadata_response,
    page_response,
    uncached_file,
)
from pipfresh.testing.index.server import Server

__all__ = ["PackageIndex"]


class PackageIndex:
    """A PyPI-like simple index (PEP 503/691/658/700) on a loopback HTTP port.

    ``latency`` seconds are slept before every response and ``bandwidth``
    (bytes/s, per response) throttles bodies; both may be changed while
    running.  ``hold()`` keeps responses waiting until ``release()``, so a test
    knows a client is mid-request (``wait_held``) without sleeping.  Pass
    ``allow_remote=True`` to bind a non-loopback host.
    """

    def __init__(
        self,
        root: Path,
        *,
        latency: float = 0.0,
        bandwidth: float | None = None,
        page_max_age: int = 600,
        gzip_pages: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not _is_loopback(host):
            raise ValueError(f"refusing to serve on non-loopback host {host!r}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError("bandwidth must be positive bytes/s or None")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.latency = latency
        self.bandwidth = bandwidth
        self.page_max_age = page_max_age
        self.gzip_pages = gzip_pages
        self.host = host
        self._port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._in_flight = 0  # responses being written: counters() waits for them
        self._holding = False  # hold(): responses wait at the gate until release()
        self._held_kinds: frozenset[str] = frozenset(KINDS)  # of these kinds
        self._at_gate = 0
        self._hold_round = 0
        self._held: list[str] = []
        self._records: list[Record] = []
        self._downloads: dict[str, int] = {}
        self._info: dict[str, tuple[tuple[int, int, int], DistFile]] = {}
        self._static: set[str] = set()
        self._yanked: dict[str, str] = {}  # filename -> reason (PEP 592)
        self._uncached: dict[str, bool] = {}  # project -> whether PEP 658 metadata is kept

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = Server((self.host, self._port), self, family)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"pipfresh-index:{self._port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.release()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PackageIndex:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("PackageIndex is not running; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def index_url(self) -> str:
        return f"{self.base_url}simple/"

    def file_url(self, filename: str) -> str:
        return f"{self.base_url}files/{quote(filename)}"

    # -- content -------------------------------------------------------------

    def publish(self, *paths: Path) -> None:
        """Copy distributions into the root; the pages change immediately.

        The copy gets a fresh mtime, which is its PEP 700 ``upload-time``
        (``os.utime`` the file under ``root`` to backdate it).
        """
        for src in map(Path, paths):
            if parse_dist_filename(src.name) is None:
                raise ValueError(f"not a wheel or sdist filename: {src.name}")
            tmp = self.root / f".{src.name}.{uuid.uuid4().hex}.tmp"
            shutil.copyfile(src, tmp)
            tmp.replace(self.root / src.name)

    def serve_statically(self, *projects: str) -> None:
        """Serve these projects as a static directory listing does (some private indexes,
        snapshot repositories): links without hashes, sizes, upload times or PEP 658
        metadata, and files with validators but no ``max-age``, so every use revalidates
        them and a file replaced under the same name is served new."""
        self._static.update(str(canonicalize_name(p)) for p in projects)

    def serve_uncached(self, *projects: str, metadata: bool = False) -> None:
        """Serve these projects as an index that sends no caching headers does (many
        private indexes and mirrors): pages with hashes, but neither pages nor files carry
        ``Cache-Control``, ``ETag`` or ``Last-Modified``, so pip's HTTP cache keeps
        nothing; and no PEP 658 metadata unless ``metadata``, so pip downloads each wheel
        to read it."""
        for project in projects:
            self._uncached[str(canonicalize_name(project))] = metadata

    def yank(self, filename: str, reason: str = "", *, yanked: bool = True) -> None:
        """Mark a distribution yanked (PEP 592), with ``reason``; ``yanked=False`` un-yanks
        it. Its page changes at once."""
        if yanked:
            self._yanked[filename] = reason
        else:
            self._yanked.pop(filename, None)

    def unpublish(self, *filenames: str) -> None:
        """Remove distributions (by filename) from the index."""
        for name in filenames:
            (self.root / Path(name).name).unlink()

    def files(self) -> dict[str, list[DistFile]]:
        """Canonical project name -> its distributions, sorted by version."""
        projects: dict[str, list[DistFile]] = {}
        seen = set()
        for path in self.root.iterdir():
            info = self.dist(path.name)
            if info is not None:
                seen.add(path.name)
                projects.setdefault(info.project, []).append(info)
        with self._lock:
            for stale in set(self._info) - seen:
                del self._info[stale]
        for dists in projects.values():
            dists.sort(key=lambda d: (d.version, d.filename))
        return dict(sorted(projects.items()))

    def dist(self, filename: str) -> DistFile | None:
        """The published distribution called ``filename``, if there is one."""
        parsed = parse_dist_filename(filename)
        if parsed is None or filename.startswith(".") or "/" in filename:
            return None
        path = self.root / filename
        try:
            st = path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._info.get(filename)
        if cached is not None and cached[0] == key:
            return cached[1]
        project, version = parsed
        info = read_dist(path, project, version, st.st_size, st.st_mtime)
        if info is None:
            return None
        with self._lock:
            self._info[filename] = (key, info)
        return info

    # -- holding clients mid-request -----------------------------------------

    def hold(self, kinds: Collection[str] = KINDS) -> None:
        """Keep every response from now on (of ``kinds``: ``"file"``, say) waiting until
        ``release()``.

        A test then knows a client is in the middle of a request (``wait_held``)
        for as long as it needs, instead of hoping it still is after a sleep.
        """
        with self._lock:
            self._holding = True
            self._held_kinds = frozenset(kinds)
            self._hold_round += 1  # a hold right after a release holds only what comes next

    def release(self) -> None:
        """Let the held responses (and every later one) go."""
        with self._lock:
            self._holding = False
            self._lock.notify_all()

    def wait_held(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until ``count`` requests are held; False after ``timeout`` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: self._at_gate >= count, timeout=timeout)

    def held_paths(self) -> list[str]:
        """The paths of the requests held now."""
        with self._lock:
            return list(self._held)

    def _gate(self, path: str, kind: str) -> None:
        with self._lock:
            if not self._holding or kind not in self._held_kinds:
                return
            held = self._hold_round
            self._at_gate += 1
            self._held.append(path)
            self._lock.notify_all()
            self._lock.wait_for(lambda: not self._holding or self._hold_round != held)
            self._at_gate -= 1
            self._held.remove(path)

    # -- counters ------------------------------------------------------------

    def counters(self) -> Counters:
        """What was served so far, once responses being written are recorded.

        A client has its last byte before the server thread records the response;
        waiting (briefly) here keeps a count read right after a request exact.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=5)
            return Counters(tuple(self._records), MappingProxyType(dict(self._downloads)))

    @property
    def connections_opened(self) -> int:
        """TCP connections the index accepted since it started."""
        return self._server.opened if self._server is not None else 0

    def reset_counters(self) -> None:
        with self._lock:
            self._records.clear()
            self._downloads.clear()

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _record(self, record: Record, filename: str | None) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()
            self._records.append(record)
            if filename is not None:
                self._downloads[filename] = self._downloads.get(filename, 0) + 1

    # -- routing -------------------------------------------------------------

    def _route(self, path: str, headers: Mapping[str, str]) -> Response:
        """The response for a GET of ``path``; ``headers`` have lower-case names."""
        path = unquote(urlsplit(path).path)
        if path in ("", "/", "/simple"):
            return redirect("/simple/")
        if path == "/simple/":
            return self._page(None, headers, self.files())
        if path.startswith("/simple/"):
            name = path[len("/simple/") :]
            bare = name.rstrip("/")
            if not bare or "/" in bare:
                return not_found()
            canonical = canonicalize_name(bare)
            projects = self.files()
            if canonical not in projects:
                return not_found()
            if name != f"{canonical}/":
                return redirect(f"/simple/{canonical}/")
            return self._page(canonical, headers, projects)
        if path.startswith("/files/"):
            return self._file(path[len("/files/") :], headers)
        return not_found()

    def _page(
        self, project: str | None, headers: Mapping[str, str], projects: dict[str, list[DistFile]]
    ) -> Response:
        ctype = negotiate(headers.get("accept"))
        if ctype is None:
            return plain(HTTPStatus.NOT_ACCEPTABLE, "other", "no acceptable content type\n")
        if project is None:
            body = render_root(list(projects), ctype)
        else:
            bare = project in self._static
            dists = projects[project]
            if not self._uncached.get(project, True):  # the page offers no PEP 658 metadata
                dists = [replace(d, metadata=None) for d in dists]
            body = render_project(project, dists, ctype, bare=bare, yanked=self._yanked)
        max_age = None if project in self._uncached else self.page_max_age
        return page_response(body, ctype, headers, max_age=max_age, gzip_pages=self.gzip_pages)

    def _file(self, filename: str, headers: Mapping[str, str]) -> Response:
        want_metadata = filename.endswith(".metadata")
        dist_name = filename[: -len(".metadata")] if want_metadata else filename
        info = self.dist(dist_name)
        if info is None:
            return not_found()
        path = self.root / dist_name
        if info.project in self._uncached:
            return uncached_file(info, path, want_metadata, self._uncached[info.project])
        static = info.project in self._static
        if want_metadata:
            return not_found() if static else metadata_response(info, headers)
        return file_response(info, path, headers, immutable=not static)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
