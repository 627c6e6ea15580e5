"""What a cached body is (wheel, sdist, index page...) and whether it is whole, from
its headers and its first ``HEAD_BYTES`` (plus a zip's central directory)."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipfresh.pip.httpcache.files import _open_nofollow
from pipfresh.pip.httpcache.model import (
    HEAD_BYTES,
    INDEX_CONTENT_TYPES,
    CachedResponse,
    Headers,
    Kind,
)

_DIGITS_RE = re.compile(r"\d+", re.ASCII)


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


@dataclass(frozen=True)
class _Inspection:
    response: CachedResponse
    evidence: _Evidence


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
