"""Reading an entry's metadata file: ``cc=4,`` then a msgpack map in pip's shape.

Small files (every ``http-v2`` one) are decoded by msgpack itself in one call. A
big legacy ``http/`` file holds the whole body inline, so a small msgpack walker
(``_Reader``) steps over its structure, seeking past the body instead of loading
it; each value it keeps is decoded by msgpack, so the semantics stay pip's.
"""

from __future__ import annotations

import re
from typing import IO, Any

import msgpack  # type: ignore[import-untyped]

from pipfresh.pip.httpcache.model import CorruptEntry, Problem

# Metadata files of big http/ entries hold the whole wheel: above _SMALL_FILE the
# msgpack structure is walked and the body seeked over, never loaded; no other
# value in such a file may exceed _MAX_SMALL_VALUE.
_SMALL_FILE = 1 << 16


_MAX_SMALL_VALUE = 1 << 20


_VERSION_RE = re.compile(rb"cc=(\d{1,6}),")


_RESPONSE_REQUIRED = frozenset({"body", "headers", "status", "version", "reason", "decode_content"})


# "strict" is written by urllib3 1.x era pips (<= 24.0); newer pips pop it.
_RESPONSE_ALLOWED = _RESPONSE_REQUIRED | {"strict"}


class _Malformed(Exception):
    pass


# type byte -> bytes to skip (nil/bool/float/int/fixext incl. its type byte)
_FIXED_SIZE = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip


# type byte -> (width of the length field, extra bytes after it): bin, ext, str
_SIZED = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
}  # fmt: skip


# type byte -> (width of the count field, objects per count): array16/32, map16/32
_CONTAINER = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


_BIN_TYPES = frozenset({0xC4, 0xC5, 0xC6})


class _Reader:
    """Bounds-checked reads and seeks over an open file of known size."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f = f
        self.size = size

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise _Malformed("truncated msgpack")
        return data

    def uint(self, width: int) -> int:
        return int.from_bytes(self.read(width), "big")

    def skip(self, n: int) -> None:
        pos = self.f.tell() + n
        if pos > self.size:
            raise _Malformed("truncated msgpack")
        self.f.seek(pos)

    def skip_object(self) -> None:
        """Advance past one msgpack object without materialising it."""
        pending = 1
        while pending:
            if pending > self.size - self.f.tell():
                raise _Malformed("truncated msgpack")
            pending -= 1
            t = self.read(1)[0]
            if t <= 0x7F or t >= 0xE0:
                continue
            if t <= 0x8F:
                pending += 2 * (t & 0x0F)
            elif t <= 0x9F:
                pending += t & 0x0F
            elif t <= 0xBF:
                self.skip(t & 0x1F)
            elif t in _FIXED_SIZE:
                self.skip(_FIXED_SIZE[t])
            elif t in _SIZED:
                width, extra = _SIZED[t]
                self.skip(self.uint(width) + extra)
            elif t in _CONTAINER:
                width, per = _CONTAINER[t]
                pending += per * self.uint(width)
            else:
                raise _Malformed(f"invalid msgpack type byte 0x{t:02x}")

    def value(self, limit: int = _MAX_SMALL_VALUE) -> Any:
        """Decode the next object with msgpack itself (so semantics match pip's)."""
        start = self.f.tell()
        self.skip_object()
        end = self.f.tell()
        if end - start > limit:
            raise _Malformed("metadata value too large")
        self.f.seek(start)
        raw = self.read(end - start)
        try:
            return msgpack.unpackb(raw, raw=False)
        except Exception as exc:  # msgpack raises a zoo of ValueError/TypeError subclasses
            raise _Malformed(f"msgpack: {exc}") from None

    def map_header(self) -> int | None:
        """Entry count if the next object is a map, else None (position unchanged)."""
        start = self.f.tell()
        t = self.read(1)[0]
        if 0x80 <= t <= 0x8F:
            return t & 0x0F
        if t in (0xDE, 0xDF):
            return self.uint(2 if t == 0xDE else 4)
        self.f.seek(start)
        return None


def _map_key(r: _Reader) -> str:
    key = r.value(limit=4096)
    if not isinstance(key, str):
        raise _Malformed(f"non-str map key {key!r:.40}")
    return key


def _describe(value: Any) -> str:
    return type(value).__name__


def _parse_response_map(r: _Reader) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The "response" map, with a bin "body" recorded as (offset, length), not read."""
    count = r.map_header()
    if count is None:
        raise _Malformed(f"response is {_describe(r.value())}, not a map")
    out: dict[str, Any] = {}
    span: tuple[int, int] | None = None
    for _ in range(count):
        key = _map_key(r)
        if key == "body":
            start = r.tell()
            t = r.read(1)[0]
            if t in _BIN_TYPES:
                length = r.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[t])
                span = (r.tell(), length)
                r.skip(length)
                out[key] = b""
                continue
            r.f.seek(start)
            span = None
        out[key] = r.value()
    return out, span


def _parse_metadata(f: IO[bytes], size: int) -> tuple[dict[str, Any], bytes | tuple[int, int]]:
    """Validate a metadata file; return (response, inline body or its (offset, length))."""
    if size == 0:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, "empty metadata file")
    prefix = f.read(16)
    m = _VERSION_RE.match(prefix)
    if m is None:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, "no cc=N, serialization prefix")
    version = m.group(1)
    if version != b"4":
        old = int(version) < 4
        raise CorruptEntry(
            Problem.STALE_FORMAT if old else Problem.UNSUPPORTED_FORMAT,
            f"serialization cc={version.decode()}",
        )
    f.seek(m.end())
    response: Any
    body: bytes | tuple[int, int] | None
    if size <= _SMALL_FILE:  # every http-v2 file, small http/ ones: one C call
        try:
            top = msgpack.unpackb(f.read(), raw=False)
        except Exception as exc:  # msgpack raises a zoo of ValueError/TypeError subclasses
            raise CorruptEntry(Problem.UNREADABLE_METADATA, f"msgpack: {exc}") from None
        if not isinstance(top, dict):
            raise CorruptEntry(Problem.UNREADABLE_METADATA, f"metadata is {_describe(top)}")
        response, vary = top.get("response"), top.get("vary", {})
        body = response.get("body") if isinstance(response, dict) else None
    else:
        response, vary, body = _walk_large(f, size)
    why = _shape_problem(response, vary)
    if why:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, why)
    assert body is not None  # _shape_problem insists on a bytes body
    return response, body


def _walk_large(f: IO[bytes], size: int) -> tuple[Any, Any, tuple[int, int] | None]:
    """(response, vary, body span) without reading the body."""
    r = _Reader(f, size)
    try:
        count = r.map_header()
        if count is None:
            raise _Malformed(f"metadata is {_describe(r.value())}, not a map")
        response: Any = None
        span: tuple[int, int] | None = None
        vary: Any = {}
        for _ in range(count):
            key = _map_key(r)
            if key == "response":
                response, span = _parse_response_map(r)
            elif key == "vary":
                vary = r.value()
            else:
                r.skip_object()
        if r.tell() != size:
            raise _Malformed("trailing bytes after msgpack")
    except _Malformed as exc:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, str(exc)) from None
    return response, vary, span


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape_problem(response: Any, vary: Any) -> str | None:
    """Why pip would choke on (or never produce) this shape, else None."""
    if not isinstance(response, dict):
        return "no response map"
    keys = set(response)
    if not isinstance(response.get("body"), bytes):
        return "body is not bytes"
    if not keys >= _RESPONSE_REQUIRED:
        return f"response lacks {sorted(_RESPONSE_REQUIRED - keys)}"
    if not keys <= _RESPONSE_ALLOWED:
        return f"response has unexpected {sorted(keys - _RESPONSE_ALLOWED)}"
    headers = response["headers"]
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return "headers are not a str->str map"
    if not (_is_int(response["status"]) and 100 <= response["status"] <= 599):
        return "bad status"
    if not _is_int(response["version"]):
        return "bad HTTP version"
    if not isinstance(response["reason"], str):
        return "bad reason"
    if not isinstance(response["decode_content"], bool):
        return "bad decode_content"
    if not isinstance(vary, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in vary.items()
    ):
        return "vary is not a str->str|None map"
    return None
