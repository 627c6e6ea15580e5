"""A loopback package index that behaves like PyPI wherever HTTP caching matters.

pipfresh's value is in what pip does *not* download again, so the tests and
benchmarks need an index whose caching headers, ETags, 304s, gzip and PEP 658
metadata match PyPI's, and which counts every byte it sends.  Distributions
are plain files in one flat directory; pages are rendered on every request, so
publishing a file changes the pages (and their ETags) at once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import email.parser
import gzip
import hashlib
import html
import ipaddress
import json
import shutil
import signal
import socket
import socketserver
import stat
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, MappingProxyType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

__all__ = [
    "HTML_V1",
    "JSON_V1",
    "KINDS",
    "TEXT_HTML",
    "Counters",
    "DistFile",
    "PackageIndex",
    "Record",
    "main",
]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# Server preference on ties: like PyPI, a bare "*/*" gets the legacy HTML.
_OFFERS = (TEXT_HTML, HTML_V1, JSON_V1)
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}
_CONTENT_TYPES = {TEXT_HTML: "text/html; charset=utf-8", HTML_V1: HTML_V1, JSON_V1: JSON_V1}
API_VERSION = "1.1"

KINDS = ("index_200", "index_304", "file", "metadata", "other")
FILE_CACHE_CONTROL = "max-age=365000000, immutable, public"
_SDIST_SUFFIXES = (".tar.gz", ".zip")


class Record(NamedTuple):
    """One served request, as the counters saw it (bytes are body bytes on the wire)."""

    method: str
    path: str
    status: int
    bytes_sent: int
    kind: str


@dataclass(frozen=True)
class Counters:
    """A snapshot of what the index served, for assertions like ``c.file_bytes == 0``.

    ``index_*`` covers ``/simple/`` pages, ``file`` distribution bodies,
    ``metadata`` PEP 658 ``.metadata`` files and ``other`` everything else
    (redirects, 404s, 406s).  Bytes are body bytes after gzip.
    """

    records: tuple[Record, ...] = ()
    downloads: Mapping[str, int] = field(default_factory=dict)
    """Distribution filename -> number of GET responses that carried its body."""

    def requests(self, kind: str | None = None) -> int:
        return sum(1 for r in self.records if kind is None or r.kind == kind)

    def bytes(self, kind: str | None = None) -> int:
        return sum(r.bytes_sent for r in self.records if kind is None or r.kind == kind)

    def paths(self, kind: str | None = None) -> list[str]:
        return [r.path for r in self.records if kind is None or r.kind == kind]

    @property
    def index_200(self) -> int:
        return self.requests("index_200")

    @property
    def index_304(self) -> int:
        return self.requests("index_304")

    @property
    def index_requests(self) -> int:
        return self.index_200 + self.index_304

    @property
    def index_bytes(self) -> int:
        return self.bytes("index_200") + self.bytes("index_304")

    @property
    def file_requests(self) -> int:
        return self.requests("file")

    @property
    def file_bytes(self) -> int:
        return self.bytes("file")

    @property
    def metadata_requests(self) -> int:
        return self.requests("metadata")

    @property
    def metadata_bytes(self) -> int:
        return self.bytes("metadata")

    @property
    def other_requests(self) -> int:
        return self.requests("other")

    @property
    def other_bytes(self) -> int:
        return self.bytes("other")

    @property
    def total_requests(self) -> int:
        return len(self.records)

    @property
    def total_bytes(self) -> int:
        return self.bytes()


@dataclass(frozen=True)
class DistFile:
    """What the index knows about one distribution file in its root."""

    filename: str
    project: str
    version: Version
    size: int
    sha256: str
    upload_time: str
    requires_python: str | None
    metadata: bytes | None
    """The wheel's ``METADATA`` (served as ``<file>.metadata``); ``None`` for sdists."""

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


def parse_dist_filename(filename: str) -> tuple[str, Version] | None:
    """Canonical project name and version of a wheel or sdist filename, else ``None``."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return str(name), version
        if filename.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return str(name), version
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def _wheel_metadata(path: Path, project: str) -> bytes | None:
    with zipfile.ZipFile(path) as zf:
        candidates = [
            n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]
        candidates.sort(key=lambda n: canonicalize_name(n.split("-")[0]) != project)
        return zf.read(candidates[0]) if candidates else None


def _sdist_pkg_info(path: Path) -> bytes | None:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                if n.count("/") == 1 and n.endswith("/PKG-INFO"):
                    return zf.read(n)
        return None
    with tarfile.open(path, "r:gz") as tf:
        for member in tf:
            top_level = member.name.count("/") == 1
            if member.isfile() and top_level and member.name.endswith("/PKG-INFO"):
                fh = tf.extractfile(member)
                return fh.read() if fh is not None else None
    return None


def _requires_python(metadata: bytes | None) -> str | None:
    if metadata is None:
        return None
    value = email.parser.BytesHeaderParser().parsebytes(metadata).get("Requires-Python")
    if value is None:
        return None
    return str(value).strip() or None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _iso(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _etag(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return f'"{digest.hexdigest()[:32]}"'


def _parse_qlist(header: str) -> list[tuple[str, float]]:
    """``a/b;q=0.5, c`` -> ``[("a/b", 0.5), ("c", 1.0)]``, lower-cased, in order."""
    out = []
    for item in header.split(","):
        token, *params = (p.strip() for p in item.split(";"))
        if not token:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        out.append((token.lower(), q))
    return out


def negotiate(accept: str | None) -> str | None:
    """The PEP 691 content type to serve for an ``Accept`` header, ``None`` for 406.

    The most specific matching range decides an offer's q; ties go to the
    client's earlier range, then to the server's preference (HTML first).
    """
    if not accept or not accept.strip():
        return TEXT_HTML
    ranges = [(_ALIASES.get(m, m), q) for m, q in _parse_qlist(accept)]
    best: tuple[float, int, int] | None = None
    chosen = None
    for offer in _OFFERS:
        major = offer.split("/")[0]
        match: tuple[int, float, int] | None = None  # (specificity, q, position)
        for pos, (media, q) in enumerate(ranges):
            specificity = {offer: 2, f"{major}/*": 1, "*/*": 0}
            spec = specificity.get(media, -1)
            if spec >= 0 and (match is None or spec > match[0]):
                match = (spec, q, pos)
        if match is None or match[1] <= 0:
            continue
        score = (match[1], match[0], -match[2])
        if best is None or score > best:
            best, chosen = score, offer
    return chosen


def accepts_gzip(accept_encoding: str | None) -> bool:
    if not accept_encoding:
        return False
    codings = dict(_parse_qlist(accept_encoding))
    if "gzip" in codings:
        return codings["gzip"] > 0
    return codings.get("*", 0.0) > 0


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))


@dataclass
class _Response:
    status: int
    kind: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: tuple[Path, int, int] | None = None  # (path, offset, length) streamed instead of body
    filename: str | None = None  # distribution whose body this is, for the downloads count

    @property
    def length(self) -> int:
        return self.file[2] if self.file is not None else len(self.body)


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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._in_flight = 0  # responses being written: counters() waits for them
        self._holding = False  # hold(): responses wait at the gate until release()
        self._at_gate = 0
        self._records: list[Record] = []
        self._downloads: dict[str, int] = {}
        self._info: dict[str, tuple[tuple[int, int, int], DistFile]] = {}
        self._static: set[str] = set()
        self._uncached: dict[str, bool] = {}  # project -> whether PEP 658 metadata is kept

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = _Server((self.host, self._port), self, family)
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
        try:
            if filename.endswith(".whl"):
                metadata = _wheel_metadata(path, project)
                requires_python = _requires_python(metadata)
            else:
                metadata = None
                requires_python = _requires_python(_sdist_pkg_info(path))
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError):
            return None
        info = DistFile(
            filename=filename,
            project=project,
            version=version,
            size=st.st_size,
            sha256=_sha256_file(path),
            upload_time=_iso(st.st_mtime),
            requires_python=requires_python,
            metadata=metadata,
        )
        with self._lock:
            self._info[filename] = (key, info)
        return info

    # -- holding clients mid-request -----------------------------------------

    def hold(self) -> None:
        """Keep every response from now on waiting until ``release()``.

        A test then knows a client is in the middle of a request (``wait_held``)
        for as long as it needs, instead of hoping it still is after a sleep.
        """
        with self._lock:
            self._holding = True

    def release(self) -> None:
        """Let the held responses (and every later one) go."""
        with self._lock:
            self._holding = False
            self._lock.notify_all()

    def wait_held(self, count: int = 1, timeout: float = 60.0) -> bool:
        """Wait until ``count`` requests are held; False after ``timeout`` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: self._at_gate >= count, timeout=timeout)

    def _gate(self) -> None:
        with self._lock:
            if not self._holding:
                return
            self._at_gate += 1
            self._lock.notify_all()
            self._lock.wait_for(lambda: not self._holding)
            self._at_gate -= 1

    # -- counters ------------------------------------------------------------

    def counters(self) -> Counters:
        """What was served so far, once responses being written are recorded.

        A client has its last byte before the server thread records the response;
        waiting (briefly) here keeps a count read right after a request exact.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=5)
            return Counters(tuple(self._records), MappingProxyType(dict(self._downloads)))

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

    def _route(self, path: str, headers: Mapping[str, str]) -> _Response:
        """The response for a GET of ``path``; ``headers`` have lower-case names."""
        path = unquote(urlsplit(path).path)
        if path in ("", "/", "/simple"):
            return _redirect("/simple/")
        if path == "/simple/":
            return self._page(None, headers, self.files())
        if path.startswith("/simple/"):
            name = path[len("/simple/") :]
            bare = name.rstrip("/")
            if not bare or "/" in bare:
                return _not_found()
            canonical = canonicalize_name(bare)
            projects = self.files()
            if canonical not in projects:
                return _not_found()
            if name != f"{canonical}/":
                return _redirect(f"/simple/{canonical}/")
            return self._page(canonical, headers, projects)
        if path.startswith("/files/"):
            return self._file(path[len("/files/") :], headers)
        return _not_found()

    def _page(
        self, project: str | None, headers: Mapping[str, str], projects: dict[str, list[DistFile]]
    ) -> _Response:
        ctype = negotiate(headers.get("accept"))
        if ctype is None:
            return _plain(HTTPStatus.NOT_ACCEPTABLE, "other", "no acceptable content type\n")
        if project is None:
            body = _render_root(list(projects), ctype)
        else:
            bare = project in self._static
            dists = projects[project]
            if not self._uncached.get(project, True):  # the page offers no PEP 658 metadata
                dists = [replace(d, metadata=None) for d in dists]
            body = _render_project(project, dists, ctype, bare=bare)
        content_type = _CONTENT_TYPES[ctype]
        etag = _etag(content_type.encode(), body)
        common = [
            ("Cache-Control", f"max-age={self.page_max_age}, public"),
            ("ETag", etag),
            ("Vary", "Accept, Accept-Encoding"),
        ]
        if project in self._uncached:
            common = [("Vary", "Accept, Accept-Encoding")]
        inm = headers.get("if-none-match")
        if project not in self._uncached and inm is not None and _etag_matches(inm, etag):
            return _Response(HTTPStatus.NOT_MODIFIED, "index_304", common)
        resp = _Response(HTTPStatus.OK, "index_200", [("Content-Type", content_type), *common])
        if self.gzip_pages and accepts_gzip(headers.get("accept-encoding")):
            body = gzip.compress(body, mtime=0)
            resp.headers.append(("Content-Encoding", "gzip"))
        resp.body = body
        return resp

    def _file(self, filename: str, headers: Mapping[str, str]) -> _Response:
        want_metadata = filename.endswith(".metadata")
        dist_name = filename[: -len(".metadata")] if want_metadata else filename
        info = self.dist(dist_name)
        if info is None:
            return _not_found()
        path = self.root / dist_name
        static = info.project in self._static
        if info.project in self._uncached:
            return self._uncached_file(info, path, want_metadata)
        common = [] if static else [("Cache-Control", FILE_CACHE_CONTROL)]
        if want_metadata:
            if info.metadata is None or static:
                return _not_found()
            etag = _etag(info.metadata)
            common.append(("ETag", etag))
            inm = headers.get("if-none-match")
            if inm is not None and _etag_matches(inm, etag):
                return _Response(HTTPStatus.NOT_MODIFIED, "metadata", common)
            return _Response(
                HTTPStatus.OK,
                "metadata",
                [("Content-Type", "application/octet-stream"), *common],
                body=info.metadata,
            )
        etag = f'"{info.sha256[:32]}"'
        common += [
            ("ETag", etag),
            ("Last-Modified", formatdate(path.stat().st_mtime, usegmt=True)),
            ("Accept-Ranges", "bytes"),
        ]
        inm = headers.get("if-none-match")
        if inm is not None and _etag_matches(inm, etag):
            return _Response(HTTPStatus.NOT_MODIFIED, "file", common)
        ctype = [("Content-Type", "application/octet-stream")]
        rng = headers.get("range")
        if_range = headers.get("if-range")
        if rng is not None and (if_range is None or if_range.strip() == etag):
            span = _parse_range(rng, info.size)
            if span is None:
                return _Response(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    "file",
                    [*common, ("Content-Range", f"bytes */{info.size}")],
                )
            if span != (0, info.size):
                start, length = span
                end = start + length - 1
                return _Response(
                    HTTPStatus.PARTIAL_CONTENT,
                    "file",
                    [*ctype, *common, ("Content-Range", f"bytes {start}-{end}/{info.size}")],
                    file=(path, start, length),
                    filename=dist_name,
                )
        return _Response(
            HTTPStatus.OK,
            "file",
            [*ctype, *common],
            file=(path, 0, info.size),
            filename=dist_name,
        )

    def _uncached_file(self, info: DistFile, path: Path, want_metadata: bool) -> _Response:
        """A file or its metadata with no caching header (``serve_uncached``), whole:
        such servers rarely answer ranges either."""
        octets = [("Content-Type", "application/octet-stream")]
        if want_metadata:
            if info.metadata is None or not self._uncached[info.project]:
                return _not_found()
            return _Response(HTTPStatus.OK, "metadata", octets, body=info.metadata)
        return _Response(
            HTTPStatus.OK, "file", octets, file=(path, 0, info.size), filename=info.filename
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as (offset, length); ``None`` if unsatisfiable.

    Anything this index does not support (multiple ranges) means the whole file.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return (0, size)
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            n = int(last)
            return None if n <= 0 or size == 0 else (max(0, size - n), min(n, size))
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return (0, size)
    if start >= size or end < start:
        return None
    end = min(end, size - 1)
    return (start, end - start + 1)


def _redirect(location: str) -> _Response:
    return _Response(
        HTTPStatus.MOVED_PERMANENTLY,
        "other",
        [("Location", location), ("Content-Type", "text/plain; charset=utf-8")],
        body=f"moved to {location}\n".encode(),
    )


def _plain(status: int, kind: str, text: str) -> _Response:
    return _Response(status, kind, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def _not_found() -> _Response:
    return _plain(HTTPStatus.NOT_FOUND, "other", "not found\n")


def _html_page(title: str, body_lines: Sequence[str]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>{html.escape(title)}</title>",
        "  </head>",
        "  <body>",
        *(f"    {line}" for line in body_lines),
        "  </body>",
        "</html>",
        "",
    ]
    return "\n".join(lines).encode()


def _render_root(projects: list[str], ctype: str) -> bytes:
    if ctype == JSON_V1:
        doc = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
        return json.dumps(doc, separators=(",", ":")).encode()
    links = [f'<a href="{quote(p)}/">{html.escape(p)}</a><br />' for p in projects]
    return _html_page("Simple index", links)


def _render_project(project: str, dists: list[DistFile], ctype: str, bare: bool = False) -> bytes:
    """The project's page; ``bare``: links only, as a static directory listing has."""
    if ctype == JSON_V1:
        files = []
        for d in dists:
            entry: dict[str, Any] = {
                "filename": d.filename,
                "url": f"../../files/{quote(d.filename)}",
                "hashes": {} if bare else {"sha256": d.sha256},
            }
            if not bare:
                entry["size"] = d.size
                entry["upload-time"] = d.upload_time
            if d.requires_python is not None:
                entry["requires-python"] = d.requires_python
            if d.metadata_sha256 is not None and not bare:
                # PEP 714: never the "dist-info-metadata" key, which crashes pip
                # 22.3-23.1; PyPI also sends its historical "data-" misspelling.
                entry["core-metadata"] = {"sha256": d.metadata_sha256}
                entry["data-dist-info-metadata"] = {"sha256": d.metadata_sha256}
            files.append(entry)
        versions = sorted({d.version for d in dists})
        doc = {
            "meta": {"api-version": API_VERSION},
            "name": project,
            "versions": [str(v) for v in versions],
            "files": files,
        }
        return json.dumps(doc, separators=(",", ":")).encode()
    links = []
    for d in dists:
        fragment = "" if bare else f"#sha256={d.sha256}"
        attrs = [f'href="../../files/{quote(d.filename)}{fragment}"']
        if d.requires_python is not None:
            attrs.append(f'data-requires-python="{html.escape(d.requires_python)}"')
        if d.metadata_sha256 is not None and not bare:
            attrs.append(f'data-dist-info-metadata="sha256={d.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={d.metadata_sha256}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(d.filename)}</a><br />")
    heading = f"<h1>Links for {html.escape(project)}</h1>"
    return _html_page(f"Links for {project}", [heading, *links])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], index: PackageIndex, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.index = index
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
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
    server: _Server
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
        resp = _plain(code, "other", f"{code} {message or HTTPStatus(code).phrase}\n")
        resp.headers.append(("Connection", "close"))
        self._send(resp, head=getattr(self, "command", None) == "HEAD")

    def _serve(self, head: bool) -> None:
        index = self.server.index
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            resp = index._route(self.path, headers)
        except Exception as exc:  # a bug in the index must not hang the client
            resp = _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "other", f"{exc!r}\n")
        self._send(resp, head)

    def _send(self, resp: _Response, head: bool) -> None:
        index = self.server.index
        index._gate()
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
    def _chunks(resp: _Response) -> Iterator[bytes]:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a directory of distributions until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipfresh.testing.index",
        description="Serve DIR as a PyPI-like simple index on a loopback port.",
    )
    parser.add_argument("dir", type=Path, help="flat directory of wheels and sdists")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per response")
    parser.add_argument("--max-age", type=int, default=600, help="Cache-Control max-age of pages")
    parser.add_argument("--no-gzip", action="store_true", help="never gzip pages")
    parser.add_argument("--log", action="store_true", help="print each request on stderr")
    args = parser.parse_args(argv)

    index = PackageIndex(
        args.dir,
        latency=args.latency,
        bandwidth=args.bandwidth,
        page_max_age=args.max_age,
        gzip_pages=not args.no_gzip,
        host=args.host,
        port=args.port,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    index.start()
    print(index.index_url, flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            if args.log:
                records = index.counters().records
                for r in records[seen:]:
                    line = f"{r.method} {r.path} {r.status} {r.bytes_sent} {r.kind}"
                    print(line, file=sys.stderr)
                seen = len(records)
    except KeyboardInterrupt:
        pass
    finally:
        index.stop()
    c = index.counters()
    print(
        f"served {c.total_requests} requests, {c.total_bytes} bytes "
        f"(index 200/304: {c.index_200}/{c.index_304}, files: {c.file_requests} "
        f"= {c.file_bytes} bytes, metadata: {c.metadata_requests})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
