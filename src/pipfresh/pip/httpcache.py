"""Read, classify and validate entries of pip's HTTP cache (``http/`` and ``http-v2/``).

pip keeps one cache entry per URL under ``sha224(cache_url(url))``, nested
five directories deep.  ``http/`` (pip <= 23.2) stores the response body
inside the msgpack metadata file; ``http-v2/`` (pip >= 23.3) stores it in a
sibling ``<key>.body`` file and uses the entry only when both files exist.

pip trusts these files: metadata that decodes to the wrong shape crashes it,
and a truncated body is served as if it were complete.  This module finds
such entries *before* pip runs, reading whole metadata files only when they
are small and only the first few KiB (plus a zip's central directory) of any
body, so a scan over thousands of entries stays cheap.
"""

from __future__ import annotations

import enum
import hashlib
import io
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import msgpack  # type: ignore[import-untyped]

from pipfresh.cache import fs

__all__ = [
    "HEAD_BYTES",
    "INDEX_CONTENT_TYPES",
    "CachedResponse",
    "CorruptEntry",
    "EntryFiles",
    "Format",
    "Headers",
    "Kind",
    "Problem",
    "Scanned",
    "cache_url",
    "check_entry",
    "classify",
    "entry_files_for",
    "entry_path",
    "explain",
    "iter_entry_files",
    "prune_empty_dirs",
    "read_body",
    "read_entry",
    "remove_entry",
    "remove_temps",
    "scan",
    "write_response",
]

Format = Literal["http", "http-v2"]

#: How much of a body is read to classify and sanity-check it.
HEAD_BYTES = 8192

#: Media types that mark a response as a (PEP 503 / PEP 691) index page.
INDEX_CONTENT_TYPES = frozenset(
    {
        "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.v1+html",
        "application/vnd.pypi.simple.latest+json",
        "application/vnd.pypi.simple.latest+html",
        "text/html",
    }
)

# Metadata files of big http/ entries hold the whole wheel: above _SMALL_FILE the
# msgpack structure is walked and the body seeked over, never loaded; no other
# value in such a file may exceed _MAX_SMALL_VALUE.
_SMALL_FILE = 1 << 16
_MAX_SMALL_VALUE = 1 << 20
_KEY_RE = re.compile(r"[0-9a-f]{56}")
_HEX_DIGIT = frozenset("0123456789abcdef")
_VERSION_RE = re.compile(rb"cc=(\d{1,6}),")
_DIGITS_RE = re.compile(r"\d+", re.ASCII)
# cachecontrol's controller.URI (RFC 3986 appendix B).
_URI_RE = re.compile(r"^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?")
_RESPONSE_REQUIRED = frozenset({"body", "headers", "status", "version", "reason", "decode_content"})
# "strict" is written by urllib3 1.x era pips (<= 24.0); newer pips pop it.
_RESPONSE_ALLOWED = _RESPONSE_REQUIRED | {"strict"}
_REDIRECT_STATUSES = frozenset({301, 308})
_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY: int = getattr(os, "O_BINARY", 0)


class Kind(str, enum.Enum):
    """What a cached response holds, as far as keeping it is concerned."""

    INDEX_PAGE = "index-page"
    WHEEL = "wheel"
    SDIST = "sdist"
    METADATA = "metadata"
    OTHER = "other"


class Problem(str, enum.Enum):
    """Why an entry cannot be trusted (or, for TEMP_FILE/STRAY_FILE, needs tidying)."""

    UNREADABLE_METADATA = "unreadable-metadata"  # not cc=4 msgpack of pip's shape
    STALE_FORMAT = "stale-format"  # cc=0..3, written by very old pips
    UNSUPPORTED_FORMAT = "unsupported-format"  # cc=5+, a future serializer
    MISSING_BODY = "missing-body"  # http-v2 metadata without a readable .body
    ORPHAN_BODY = "orphan-body"  # http-v2 .body without metadata
    TRUNCATED_BODY = "truncated-body"  # shorter than Content-Length, or empty
    OVERSIZED_BODY = "oversized-body"  # longer than Content-Length
    BAD_ENCODING = "bad-encoding"  # Content-Encoding declared but does not decode
    BAD_ARCHIVE = "bad-archive"  # zip without readable central directory, bad gzip
    TEMP_FILE = "temp-file"  # leftover of an interrupted adjacent_tmp_file write
    STRAY_FILE = "stray-file"  # file pip never reads: symlink, misplaced, unknown name


# Problems that mean there is no response to speak of (read_entry raises).
_FATAL = frozenset(
    {
        Problem.UNREADABLE_METADATA,
        Problem.STALE_FORMAT,
        Problem.UNSUPPORTED_FORMAT,
        Problem.MISSING_BODY,
        Problem.ORPHAN_BODY,
        Problem.TEMP_FILE,
        Problem.STRAY_FILE,
    }
)


class CorruptEntry(Exception):
    """An entry that cannot be read as a response."""

    def __init__(self, problem: Problem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


class Headers(Mapping[str, str]):
    """Read-only header mapping with case-insensitive lookup (last duplicate wins)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str):
            raise KeyError(key)
        return self._items[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.lower_items()) == {str(k).lower(): v for k, v in other.items()}

    def __hash__(self) -> int:
        return hash(frozenset(self.lower_items()))

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"

    def lower_items(self) -> Iterator[tuple[str, str]]:
        """Pairs with lower-cased names, for comparisons."""
        return ((k, v) for k, (_, v) in self._items.items())


@dataclass(frozen=True)
class CachedResponse:
    """The parts of a cached response that decide whether to keep it."""

    status: int
    headers: Headers
    etag: str | None
    content_type: str  # media type, lower-cased, without parameters ("" if absent)
    content_encoding: str | None
    cache_control: str | None
    content_length: int | None  # the header, when it is a plain decimal number
    body_size: int  # bytes actually stored (raw, still Content-Encoded)
    kind: Kind


@dataclass(frozen=True)
class EntryFiles:
    """The files one cache key owns in one leaf directory.

    ``key`` is the sha224 hex name; for a stray file that belongs to no key it
    is the file's path relative to the cache directory.  In ``http/`` a
    ``<key>.body`` file is never read by pip, so it is listed as a stray.
    """

    key: str
    fmt: Format
    meta: Path | None
    body: Path | None
    temps: tuple[Path, ...] = ()
    strays: tuple[Path, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file of the entry."""
        own = tuple(p for p in (self.meta, self.body) if p is not None)
        return own + self.temps + self.strays

    def fingerprint(self) -> tuple[int, ...]:
        """(inode, size, mtime_ns) of each file in :attr:`paths` order, -1s for a vanished one.

        Flat ints so it can be stored as JSON; equal fingerprints mean the
        entry need not be validated again (pip replaces files, new inode).
        """
        out: list[int] = []
        for path in self.paths:
            try:
                st = os.lstat(path)
            except OSError:
                out += (-1, -1, -1)
            else:
                out += (st.st_ino, st.st_size, st.st_mtime_ns)
        return tuple(out)


class Scanned(NamedTuple):
    """One row of :func:`scan`."""

    entry: EntryFiles
    response: CachedResponse | None
    problem: Problem | None


# --------------------------------------------------------------------------- paths


def cache_url(url: str) -> str:
    """The cache key cachecontrol derives from a request URL (``CacheController._urlnorm``).

    pip hashes the URL *as requests prepared it*; for ordinary ASCII URLs that
    is the URL itself (host case and the fragment do not matter here).
    """
    m = _URI_RE.match(url)
    assert m is not None  # the pattern matches every string
    scheme, authority, path, query = m.group(2), m.group(4), m.group(5), m.group(7)
    if not scheme or not authority:
        raise ValueError(f"Only absolute URIs are allowed. uri = {url}")
    path = path or "/"
    request_uri = f"{path}?{query}" if query else path
    return f"{scheme.lower()}://{authority.lower()}{request_uri}"


def _key_for(url: str) -> str:
    return hashlib.sha224(cache_url(url).encode()).hexdigest()


def entry_path(http_dir: Path, url: str) -> Path:
    """Path of the metadata file pip uses for ``url`` (``<key>.body`` sits next to it)."""
    key = _key_for(url)
    return Path(http_dir, *key[:5], key)


def _infer_format(http_dir: Path) -> Format:
    if http_dir.name == "http":
        return "http"
    if http_dir.name == "http-v2":
        return "http-v2"
    raise ValueError(f"cannot tell the cache format of {http_dir}; pass fmt=")


def _is_regular(de: os.DirEntry[str]) -> bool:
    try:
        return de.is_file(follow_symlinks=False)
    except OSError:
        return False


def _scandir_sorted(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda de: de.name)
    except OSError:  # vanished or unreadable: nothing pip could use either
        return []


def _stray(http_dir: Path, fmt: Format, path: Path) -> EntryFiles:
    rel = path.relative_to(http_dir).as_posix()
    return EntryFiles(key=rel, fmt=fmt, meta=None, body=None, strays=(path,))


def _group_leaf(
    http_dir: Path, fmt: Format, leaf: Path, prefix: str, files: list[tuple[str, bool]]
) -> Iterator[EntryFiles]:
    """The entries of one leaf directory from its files, ``(name, is a regular file)``
    sorted by name: grouped by key, then the files that belong to no key."""
    groups: dict[str, dict[str, list[Path]]] = {}
    loose: list[Path] = []
    for name, regular in files:
        path = leaf / name
        key = name[:56]
        if not (_KEY_RE.fullmatch(key) and key.startswith(prefix)):
            loose.append(path)
            continue
        rest = name[56:]
        slots = groups.setdefault(key, {"meta": [], "body": [], "temps": [], "strays": []})
        if regular and rest == "":
            slots["meta"].append(path)
        elif regular and rest == ".body" and fmt == "http-v2":
            slots["body"].append(path)
        elif regular and rest.endswith(".tmp"):
            slots["temps"].append(path)
        else:
            slots["strays"].append(path)
    for key in sorted(groups):
        slots = groups[key]
        yield EntryFiles(
            key=key,
            fmt=fmt,
            meta=slots["meta"][0] if slots["meta"] else None,
            body=slots["body"][0] if slots["body"] else None,
            temps=tuple(slots["temps"]),
            strays=tuple(slots["strays"]),
        )
    for path in loose:
        yield _stray(http_dir, fmt, path)


def iter_entry_files(http_dir: Path, fmt: Format | None = None) -> Iterator[EntryFiles]:
    """Walk one ``http/`` or ``http-v2/`` directory, grouping files by key.

    Yields orphans (body without metadata), temp leftovers and stray files
    too.  Symlinks are reported as strays and never followed; unknown
    directories are skipped.  Tolerates directories vanishing mid-walk.
    """
    http_dir = Path(http_dir)
    fmt = fmt or _infer_format(http_dir)
    yield from group_files(http_dir, fmt, fs.walk(http_dir, enter=hex_dirs(http_dir)))


def hex_dirs(http_dir: Path) -> fs.Enter:
    """``fs.walk``'s rule for a cache directory: only pip's five levels of hex digits."""
    top = os.path.join(os.fspath(http_dir), "")

    def enter(path: str) -> bool:
        parts = path[len(top) :].split(os.sep)
        return len(parts) <= 5 and all(len(p) == 1 and p in _HEX_DIGIT for p in parts)

    return enter


def group_files(
    http_dir: Path, fmt: Format, found: Iterable[tuple[str, os.stat_result]]
) -> Iterator[EntryFiles]:
    """The entries of ``http_dir`` from its walk's files, in the order of names
    (each leaf's keyed entries before its stray files)."""
    top = os.path.join(os.fspath(http_dir), "")
    leaves: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    rows: list[tuple[tuple[tuple[int, str], ...], EntryFiles]] = []
    for full, st in found:
        parts = tuple(full[len(top) :].split(os.sep))
        if len(parts) == 6:
            leaves.setdefault(parts[:5], []).append((parts[5], stat.S_ISREG(st.st_mode)))
        else:
            rows.append((tuple((0, p) for p in parts), _stray(http_dir, fmt, Path(full))))
    for dirs, files in leaves.items():
        files.sort()
        where = tuple((0, p) for p in dirs)
        grouped = _group_leaf(http_dir, fmt, http_dir.joinpath(*dirs), "".join(dirs), files)
        rows += (((*where, (0, str(i).zfill(9))), entry) for i, entry in enumerate(grouped))
    rows.sort(key=lambda row: row[0])
    for _where, entry in rows:
        yield entry


def entry_files_for(meta: Path, fmt: Format | None = None) -> EntryFiles:
    """The files of the entry whose metadata path is ``meta`` (e.g. from :func:`entry_path`).

    Works whether or not the files exist; ``fmt`` defaults to the name of the
    cache directory five levels above the leaf.
    """
    meta = Path(meta)
    if not _KEY_RE.fullmatch(meta.name) or len(meta.parts) < 7:
        raise ValueError(f"not a cache entry path: {meta}")
    leaf = meta.parent
    http_dir = meta.parents[5]
    fmt = fmt or _infer_format(http_dir)
    prefix = "".join(leaf.parts[-5:])
    files = [(de.name, _is_regular(de)) for de in _scandir_sorted(leaf)]
    for entry in _group_leaf(http_dir, fmt, leaf, prefix, files):
        if entry.key == meta.name:
            return entry
    return EntryFiles(key=meta.name, fmt=fmt, meta=None, body=None)


# --------------------------------------------------------------------------- msgpack


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


# --------------------------------------------------------------------------- bodies


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [base, base+length) of an open file."""

    def __init__(self, f: IO[bytes], base: int, length: int) -> None:
        super().__init__()
        self._f = f
        self._base = base
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        anchor = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        pos = anchor + offset
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._length - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._base + self._pos)
        data = self._f.read(n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _encodings(headers: Mapping[str, str]) -> list[str]:
    raw = headers.get("content-encoding", "")
    return [e for e in (p.strip().lower() for p in raw.split(",")) if e and e != "identity"]


def _inflate(data: bytes, wbits: int, complete: bool) -> bytes:
    """First HEAD_BYTES of zlib/gzip/raw-deflate data (zlib.error if invalid).

    ``complete`` says ``data`` is the whole stream, so it must also end
    properly; the rest of the output is discarded as it is produced.
    """
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, HEAD_BYTES)
    if complete:
        while d.unconsumed_tail and not d.eof:
            d.decompress(d.unconsumed_tail, 1 << 16)
        if not d.eof:
            raise zlib.error("compressed stream ends early")
    return out


def _decode_head(
    head: bytes, encodings: list[str], complete: bool
) -> tuple[bytes | None, str | None]:
    """First decoded bytes of a (possibly partial) Content-Encoded body.

    Returns (None, None) for encodings we cannot undo and (None, why) for
    bodies that are not valid in their declared encoding.
    """
    data = head
    for enc in reversed(encodings):
        if enc in ("gzip", "x-gzip"):
            modes = [16 + zlib.MAX_WBITS]
        elif enc == "deflate":  # zlib-wrapped per RFC, raw deflate in the wild
            modes = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
        else:
            return None, None
        err = ""
        for wbits in modes:
            try:
                data = _inflate(data, wbits, complete)
                break
            except zlib.error as exc:
                err = f"{enc}: {exc}"
        else:
            return None, err
        complete = False  # inner layers are only seen in part
    return data, None


def _zip_names(body: IO[bytes]) -> list[str]:
    """Member names from the central directory (zipfile reads nothing else)."""
    with zipfile.ZipFile(body) as zf:
        return zf.namelist()


def _gzip_error(data: bytes, complete: bool) -> str | None:
    try:
        _inflate(data, 16 + zlib.MAX_WBITS, complete)
    except zlib.error as exc:
        return f"gzip: {exc}"
    return None


def _is_wheel(names: list[str]) -> bool:
    for name in names:
        top, sep, rest = name.partition("/")
        if sep and rest == "WHEEL" and top.endswith(".dist-info"):
            return True
    return False


def _looks_like_index(data: bytes) -> bool:
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"{"):
        return True
    return text.startswith((b"<!doctype html", b"<html")) or (
        text.startswith(b"<") and b"<a " in text
    )


@dataclass(frozen=True)
class _Evidence:
    kind: Kind
    encoding_error: str | None = None
    archive_error: str | None = None


def _sniff(
    headers: Mapping[str, str], head: bytes, body: IO[bytes] | None, complete: bool
) -> _Evidence:
    """Classify by Content-Type, then by the decoded body's magic bytes.

    ``complete`` says ``head`` is the whole body, which allows checking that
    compressed streams end properly.
    """
    encodings = _encodings(headers)
    decoded, enc_err = _decode_head(head, encodings, complete)
    if _media_type(headers) in INDEX_CONTENT_TYPES:
        return _Evidence(Kind.INDEX_PAGE, encoding_error=enc_err)
    if decoded is None:
        return _Evidence(Kind.OTHER, encoding_error=enc_err)
    if decoded.startswith(b"PK\x03\x04"):
        if encodings:  # central directory is beyond reach without decoding it all
            return _Evidence(Kind.OTHER)
        try:
            names = _zip_names(body if body is not None else io.BytesIO(head))
        except Exception as exc:  # zipfile raises BadZipFile, ValueError, OSError, ...
            return _Evidence(Kind.OTHER, archive_error=f"zip: {exc}")
        return _Evidence(Kind.WHEEL if _is_wheel(names) else Kind.SDIST)
    if decoded.startswith(b"\x1f\x8b"):
        return _Evidence(Kind.SDIST, archive_error=_gzip_error(decoded, complete and not encodings))
    if decoded.startswith((b"BZh", b"\xfd7zXZ\x00")) or decoded[257:262] == b"ustar":
        return _Evidence(Kind.SDIST)
    if decoded[:17].lower() == b"metadata-version:":
        return _Evidence(Kind.METADATA)
    if _looks_like_index(decoded):
        return _Evidence(Kind.INDEX_PAGE)
    return _Evidence(Kind.OTHER)


def classify(headers: Mapping[str, str], head: bytes, body: Path | bytes | None = None) -> Kind:
    """Kind of a response from its headers and the first bytes of its raw body.

    ``body`` (the whole raw body, as a file or bytes) is only consulted for
    zips, to tell wheels from zip sdists; without it ``head`` stands in.
    """
    if not isinstance(headers, Headers):
        headers = Headers(headers)
    if isinstance(body, Path):
        with _open_nofollow(body) as f:
            return _sniff(headers, head, f, False).kind
    if body is None:
        return _sniff(headers, head, None, False).kind
    return _sniff(headers, head, io.BytesIO(body), len(head) >= len(body)).kind


# --------------------------------------------------------------------------- entries


def _open_nofollow(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"not a regular file: {path}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class _Inspection:
    response: CachedResponse
    evidence: _Evidence


def _no_meta_problem(entry: EntryFiles) -> CorruptEntry:
    if entry.body is not None:
        return CorruptEntry(Problem.ORPHAN_BODY, "body without metadata")
    if entry.temps:
        return CorruptEntry(Problem.TEMP_FILE, "only temporary files")
    if entry.strays:
        return CorruptEntry(Problem.STRAY_FILE, "file pip never reads")
    return CorruptEntry(Problem.UNREADABLE_METADATA, "no metadata file")


def _inspect(entry: EntryFiles) -> _Inspection:
    if entry.meta is None:
        raise _no_meta_problem(entry)
    try:
        meta_f = _open_nofollow(entry.meta)
    except FileNotFoundError:  # deleted since the walk
        gone = EntryFiles(entry.key, entry.fmt, None, entry.body, entry.temps, entry.strays)
        raise _no_meta_problem(gone) from None
    except OSError as exc:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, str(exc)) from None
    with meta_f:
        try:
            size = os.fstat(meta_f.fileno()).st_size
            response, body = _parse_metadata(meta_f, size)
        except OSError as exc:
            raise CorruptEntry(Problem.UNREADABLE_METADATA, str(exc)) from None
        headers = Headers(response["headers"])
        status: int = response["status"]
        if entry.fmt == "http":
            try:
                if isinstance(body, bytes):
                    return _build(status, headers, io.BytesIO(body), 0, len(body))
                return _build(status, headers, meta_f, *body)
            except OSError as exc:
                raise CorruptEntry(Problem.UNREADABLE_METADATA, str(exc)) from None
    if entry.body is None:
        raise CorruptEntry(Problem.MISSING_BODY, "metadata without .body")
    try:
        body_f = _open_nofollow(entry.body)
    except OSError as exc:  # pip would serve the empty inline body instead
        raise CorruptEntry(Problem.MISSING_BODY, str(exc)) from None
    with body_f:
        try:
            return _build(status, headers, body_f, 0, os.fstat(body_f.fileno()).st_size)
        except OSError as exc:
            raise CorruptEntry(Problem.MISSING_BODY, str(exc)) from None


def _build(status: int, headers: Headers, f: IO[bytes], offset: int, length: int) -> _Inspection:
    if status in (200, 203) and length:
        f.seek(offset)
        head = f.read(min(length, HEAD_BYTES))
        window = io.BufferedReader(_Window(f, offset, length))
        evidence = _sniff(headers, head, window, complete=len(head) == length)
    else:  # redirects carry no body; an empty 200 is judged in check_entry
        evidence = _Evidence(Kind.OTHER)
    cl = headers.get("content-length", "").strip()
    response = CachedResponse(
        status=status,
        headers=headers,
        etag=headers.get("etag"),
        content_type=_media_type(headers),
        content_encoding=headers.get("content-encoding"),
        cache_control=headers.get("cache-control"),
        content_length=int(cl) if _DIGITS_RE.fullmatch(cl) else None,
        body_size=length,
        kind=evidence.kind,
    )
    return _Inspection(response, evidence)


def read_entry(entry: EntryFiles) -> CachedResponse:
    """Decode an entry's metadata and classify its body.

    Raises :class:`CorruptEntry` when there is no response to read (no or
    undecodable metadata, old/unknown format, http-v2 body missing).  Body
    defects (truncation, broken archives) are reported by :func:`check_entry`.
    """
    return _inspect(entry).response


def read_body(entry: EntryFiles, limit: int = 64 << 20) -> bytes:
    """An entry's whole body, its Content-Encoding undone: what pip read (an index page).

    Raises :class:`CorruptEntry` when there is no response, ``OSError`` when a file
    cannot be read, and ``ValueError`` for a body above ``limit`` bytes or in an
    encoding this module does not undo.
    """
    if entry.meta is None:
        raise _no_meta_problem(entry)
    with _open_nofollow(entry.meta) as meta_f:
        response, inline = _parse_metadata(meta_f, os.fstat(meta_f.fileno()).st_size)
        if entry.fmt == "http" and isinstance(inline, bytes):
            raw = inline
        elif entry.fmt == "http":
            offset, length = inline
            if length > limit:
                raise ValueError(f"body of {length} bytes")
            meta_f.seek(offset)
            raw = meta_f.read(length)
    if entry.fmt == "http-v2":
        if entry.body is None:
            raise CorruptEntry(Problem.MISSING_BODY, "metadata without .body")
        with _open_nofollow(entry.body) as body_f:
            raw = body_f.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"body above {limit} bytes")
    for encoding in reversed(_encodings(Headers(response["headers"]))):
        raw = _decoded(raw, encoding, limit)
    return raw


def _decoded(data: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        modes = [16 + zlib.MAX_WBITS]
    elif encoding == "deflate":  # zlib-wrapped per RFC, raw deflate in the wild
        modes = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        raise ValueError(f"Content-Encoding {encoding}")
    for wbits in modes:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise ValueError(f"body above {limit} bytes once decoded")
        return out
    raise ValueError(f"not valid {encoding}")


def _body_problem(insp: _Inspection) -> tuple[Problem, str] | None:
    resp, ev = insp.response, insp.evidence
    if resp.status not in (200, 203):
        return None  # cachecontrol stores redirects with an empty body on purpose
    if resp.content_length is not None and resp.body_size != resp.content_length:
        problem = (
            Problem.TRUNCATED_BODY
            if resp.body_size < resp.content_length
            else Problem.OVERSIZED_BODY
        )
        return problem, f"{resp.body_size} bytes stored, Content-Length {resp.content_length}"
    if resp.body_size == 0:
        return Problem.TRUNCATED_BODY, "empty body"
    if ev.encoding_error:
        return Problem.BAD_ENCODING, ev.encoding_error
    if ev.archive_error:
        return Problem.BAD_ARCHIVE, ev.archive_error
    return None


def _check(entry: EntryFiles) -> tuple[CachedResponse | None, Problem | None, str]:
    try:
        insp = _inspect(entry)
    except CorruptEntry as exc:
        return None, exc.problem, exc.detail
    found = _body_problem(insp)
    if found is not None:
        return insp.response, found[0], found[1]
    if entry.temps:
        return insp.response, Problem.TEMP_FILE, f"{len(entry.temps)} leftover temp file(s)"
    if entry.strays:
        return insp.response, Problem.STRAY_FILE, f"{len(entry.strays)} stray file(s)"
    return insp.response, None, ""


def check_entry(entry: EntryFiles) -> tuple[CachedResponse | None, Problem | None]:
    """Fully validate an entry: ``(response, None)`` means pip can use it safely.

    The response is None when the metadata is unusable; it is returned along
    with body problems (and with TEMP_FILE/STRAY_FILE for an otherwise good
    entry that has leftovers next to it).  Never raises for bad cache content.
    """
    response, problem, _detail = _check(entry)
    return response, problem


def explain(entry: EntryFiles) -> str | None:
    """Human-readable form of :func:`check_entry`'s problem, None if healthy."""
    _response, problem, detail = _check(entry)
    if problem is None:
        return None
    return f"{problem.value}: {detail}" if detail else problem.value


def scan(http_dir: Path, fmt: Format | None = None) -> list[Scanned]:
    """check_entry over every entry of one cache directory."""
    return [Scanned(e, *check_entry(e)) for e in iter_entry_files(http_dir, fmt)]


# --------------------------------------------------------------------------- writing


def write_response(http_dir: Path, url: str, headers: Mapping[str, str], body: Path) -> None:
    """Store a ``200 OK`` for ``url`` in pip's cache as pip's cachecontrol would, in the
    format of ``http_dir``: ``http-v2`` with the body beside (hardlinked from ``body``
    where it can be), ``http`` with it inside. Each file is replaced atomically, an
    ``http-v2`` body before its metadata: pip uses an entry only when both exist.
    Raises ``LinkInCache`` for a link on the way, ``OSError`` when it cannot write.
    """
    fmt = _infer_format(http_dir)
    meta = entry_path(http_dir, url)
    fs.require_real_dirs(http_dir, meta.parent)
    meta.parent.mkdir(parents=True, exist_ok=True)
    response: dict[str, Any] = {
        "body": b"",
        "headers": dict(headers),
        "status": 200,
        "version": 11,
        "reason": "OK",
        "decode_content": False,
    }
    if fmt == "http-v2":
        fs.copy_atomic(body, meta.with_name(meta.name + ".body"))
    else:
        response["body"] = body.read_bytes()
    packed = msgpack.packb({"response": response, "vary": {}}, use_bin_type=True)
    fs.write_bytes_atomic(meta, b"cc=4," + packed)


def _unlink_all(paths: Iterable[Path]) -> int:
    freed = 0
    for path in paths:
        try:
            st = os.lstat(path)
            os.unlink(path)  # removes a symlink itself, never its target
        except FileNotFoundError:
            continue  # another pip got there first
        if st.st_nlink <= 1:  # a hard link shared with another cache frees nothing
            freed += st.st_size
    return freed


def remove_entry(entry: EntryFiles) -> int:
    """Delete the entry's own files (never directories); return bytes freed.

    Files hard-linked elsewhere (another partition) count as freeing nothing.
    Tolerates files vanishing concurrently.  A temp file may belong to a pip
    that is writing right now; callers should skip young ones.
    """
    return _unlink_all(entry.paths)


def remove_temps(entry: EntryFiles) -> int:
    """Delete only the entry's temp leftovers; return bytes freed."""
    return _unlink_all(entry.temps)


def prune_empty_dirs(http_dir: Path) -> int:
    """Remove empty hex directories under ``http_dir`` (not it); return how many.

    A concurrent pip that just created a directory will at worst fail to
    cache one response (pip ignores cache write errors).
    """
    removed = 0

    def walk(path: Path, depth: int) -> bool:
        nonlocal removed
        empty = True
        for de in _scandir_sorted(path):
            hexdir = len(de.name) == 1 and de.name in _HEX_DIGIT
            if depth < 5 and hexdir and de.is_dir(follow_symlinks=False):
                child = path / de.name
                if walk(child, depth + 1):
                    try:
                        os.rmdir(child)
                        removed += 1
                        continue
                    except OSError:
                        pass
            empty = False
        return empty

    walk(Path(http_dir), 0)
    return removed
