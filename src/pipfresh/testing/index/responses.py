"""The responses the index gives for a page, a distribution file and its PEP 658
metadata, with PyPI's caching headers (or, for projects served as a
cache-less or static index would serve them, without).

These decide what pip's HTTP cache may keep and revalidate, so every header
here is one a test depends on.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path

from pipfresh.testing.index.files import DistFile
from pipfresh.testing.index.http import (
    CONTENT_TYPES,
    Response,
    accepts_gzip,
    etag,
    etag_matches,
    not_found,
    parse_range,
)

__all__ = [
    "FILE_CACHE_CONTROL",
    "file_response",
    "metadata_response",
    "page_response",
    "uncached_file",
]

FILE_CACHE_CONTROL = "max-age=365000000, immutable, public"
_OCTETS = ("Content-Type", "application/octet-stream")
_VARY = ("Vary", "Accept, Accept-Encoding")


def page_response(
    body: bytes,
    ctype: str,
    headers: Mapping[str, str],
    *,
    max_age: int | None,
    gzip_pages: bool,
) -> Response:
    """A rendered page; ``max_age=None``: no caching headers and no 304s."""
    content_type = CONTENT_TYPES[ctype]
    common = [_VARY]
    if max_age is not None:
        tag = etag(content_type.encode(), body)
        common = [("Cache-Control", f"max-age={max_age}, public"), ("ETag", tag), _VARY]
        inm = headers.get("if-none-match")
        if inm is not None and etag_matches(inm, tag):
            return Response(HTTPStatus.NOT_MODIFIED, "index_304", common)
    resp = Response(HTTPStatus.OK, "index_200", [("Content-Type", content_type), *common])
    if gzip_pages and accepts_gzip(headers.get("accept-encoding")):
        body = gzip.compress(body, mtime=0)
        resp.headers.append(("Content-Encoding", "gzip"))
    resp.body = body
    return resp


def metadata_response(info: DistFile, headers: Mapping[str, str]) -> Response:
    """A wheel's ``.metadata`` file, immutable like the wheel itself."""
    if info.metadata is None:
        return not_found()
    tag = etag(info.metadata)
    common = [("Cache-Control", FILE_CACHE_CONTROL), ("ETag", tag)]
    inm = headers.get("if-none-match")
    if inm is not None and etag_matches(inm, tag):
        return Response(HTTPStatus.NOT_MODIFIED, "metadata", common)
    return Response(HTTPStatus.OK, "metadata", [_OCTETS, *common], body=info.metadata)


def file_response(
    info: DistFile, path: Path, headers: Mapping[str, str], *, immutable: bool
) -> Response:
    """A distribution, honouring ``If-None-Match`` and a single ``Range``.

    ``immutable=False`` leaves out ``Cache-Control``, as a static listing does,
    so every use revalidates the file.
    """
    tag = f'"{info.sha256[:32]}"'
    common = [("Cache-Control", FILE_CACHE_CONTROL)] if immutable else []
    common += [
        ("ETag", tag),
        ("Last-Modified", formatdate(path.stat().st_mtime, usegmt=True)),
        ("Accept-Ranges", "bytes"),
    ]
    inm = headers.get("if-none-match")
    if inm is not None and etag_matches(inm, tag):
        return Response(HTTPStatus.NOT_MODIFIED, "file", common)
    rng = headers.get("range")
    if_range = headers.get("if-range")
    if rng is not None and (if_range is None or if_range.strip() == tag):
        partial = _range_response(info, path, rng, common)
        if partial is not None:
            return partial
    return Response(
        HTTPStatus.OK,
        "file",
        [_OCTETS, *common],
        file=(path, 0, info.size),
        filename=info.filename,
    )


def _range_response(
    info: DistFile, path: Path, rng: str, common: list[tuple[str, str]]
) -> Response | None:
    """The 206 or 416 for ``rng``; ``None`` when it asks for the whole file."""
    span = parse_range(rng, info.size)
    if span is None:
        return Response(
            HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
            "file",
            [*common, ("Content-Range", f"bytes */{info.size}")],
        )
    if span == (0, info.size):
        return None
    start, length = span
    end = start + length - 1
    return Response(
        HTTPStatus.PARTIAL_CONTENT,
        "file",
        [_OCTETS, *common, ("Content-Range", f"bytes {start}-{end}/{info.size}")],
        file=(path, start, length),
        filename=info.filename,
    )


def uncached_file(info: DistFile, path: Path, want_metadata: bool, metadata: bool) -> Response:
    """A file or its metadata (if ``metadata`` is served) with no caching header
    (``serve_uncached``), whole: such servers rarely answer ranges either."""
    if want_metadata:
        if info.metadata is None or not metadata:
            return not_found()
        return Response(HTTPStatus.OK, "metadata", [_OCTETS], body=info.metadata)
    return Response(
        HTTPStatus.OK, "file", [_OCTETS], file=(path, 0, info.size), filename=info.filename
    )
