"""Reading, checking and writing one entry of pip's HTTP cache.

``check_entry`` is what health and prune ask: can pip use this entry safely?
The legacy ``http/`` format's inline body is read in ``legacy``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

from pipfresh.cache import fs
from pipfresh.pip.httpcache import legacy
from pipfresh.pip.httpcache.files import _open_nofollow, entry_files_for
from pipfresh.pip.httpcache.keys import _infer_format, entry_path
from pipfresh.pip.httpcache.metadata import _parse_metadata
from pipfresh.pip.httpcache.model import (
    CachedResponse,
    CorruptEntry,
    EntryFiles,
    Headers,
    Problem,
)
from pipfresh.pip.httpcache.sniff import _build, _decoded, _encodings, _Inspection


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
            return legacy.inspect_inline(status, headers, meta_f, body)
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
        if entry.fmt == "http":
            raw = legacy.read_inline(meta_f, inline, limit)
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


def write_response(
    http_dir: Path,
    url: str,
    headers: Mapping[str, str],
    body: Path | bytes,
    vary: Mapping[str, str | None] | None = None,
) -> None:
    """Store a ``200 OK`` for ``url`` in pip's cache as pip's cachecontrol would, in the
    format of ``http_dir``: ``http-v2`` with the body beside (hardlinked from a ``body``
    path where it can be), ``http`` with it inside. ``vary``: the request's values of the
    headers the response varies on, which pip compares with its own request's.
    Each file is replaced atomically, an ``http-v2`` body before its metadata: pip uses
    an entry only when both exist.
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
    beside = meta.with_name(meta.name + ".body")
    if fmt == "http":
        response["body"] = body if isinstance(body, bytes) else body.read_bytes()
    elif isinstance(body, bytes):
        fs.write_bytes_atomic(beside, body)
    else:
        fs.copy_atomic(body, beside)
    _write_meta(meta, response, dict(vary or {}))


def refresh_entry(http_dir: Path, url: str, headers: Mapping[str, str]) -> None:
    """Take a ``304 Not Modified`` for ``url`` into its entry as cachecontrol does
    (``CacheController.update_cached_response``): the 304's headers replace the stored
    ones of the same name, but ``Content-Length``, and the status becomes 200. Its new
    ``Date`` is what makes a pip that trusts ``max-age`` (>= 26.2) take the entry as fresh.
    The body and what the entry varies on stay (pip stored them for its own request).

    Raises ``CorruptEntry`` when there is no usable entry to refresh (pip would not use
    it either), ``LinkInCache`` for a link on the way, ``OSError`` when it cannot write.
    """
    meta = entry_path(http_dir, url)
    fs.require_real_dirs(http_dir, meta.parent)
    entry = entry_files_for(meta, _infer_format(http_dir))
    if entry.meta is None:
        raise _no_meta_problem(entry)
    if entry.fmt == "http-v2" and entry.body is None:
        raise CorruptEntry(Problem.MISSING_BODY, "metadata without .body")
    with _open_nofollow(entry.meta) as meta_f:
        size = os.fstat(meta_f.fileno()).st_size
        _parse_metadata(meta_f, size)  # pip's shape, or CorruptEntry
        meta_f.seek(0)
        data = msgpack.unpackb(meta_f.read()[len(b"cc=4,") :], raw=False)
    response = data["response"]
    fresh = {k.lower() for k in headers if k.lower() != "content-length"}
    kept = {k: v for k, v in response["headers"].items() if k.lower() not in fresh}
    new = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    response.update(headers={**kept, **new}, status=200)
    _write_meta(meta, response, data.get("vary") or {})


def _write_meta(meta: Path, response: Mapping[str, Any], vary: Mapping[str, Any]) -> None:
    packed = msgpack.packb({"response": dict(response), "vary": dict(vary)}, use_bin_type=True)
    fs.write_bytes_atomic(meta, b"cc=4," + packed)
