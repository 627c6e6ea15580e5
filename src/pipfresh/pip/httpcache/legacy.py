"""The legacy ``http/`` format (pip < 23.3), fenced here: the body is inside the metadata.

An ``http/`` entry is one file, ``cc=4,`` and a msgpack map whose ``response.body``
holds the whole response. ``metadata._parse_metadata`` gives that body as bytes (a
small file) or as its ``(offset, length)`` in the file (a big one, never loaded);
these two functions read it from there. Everything else about an entry is shared
with ``http-v2``, which keeps the body in a ``<key>.body`` file beside it.
"""

from __future__ import annotations

import io
from typing import IO

from pipfresh.pip.httpcache.model import CorruptEntry, Headers, Problem
from pipfresh.pip.httpcache.sniff import _build, _Inspection


def inspect_inline(
    status: int, headers: Headers, meta_f: IO[bytes], body: bytes | tuple[int, int]
) -> _Inspection:
    """Classify the body kept in the open metadata file ``meta_f``."""
    try:
        if isinstance(body, bytes):
            return _build(status, headers, io.BytesIO(body), 0, len(body))
        return _build(status, headers, meta_f, *body)
    except OSError as exc:
        raise CorruptEntry(Problem.UNREADABLE_METADATA, str(exc)) from None


def read_inline(meta_f: IO[bytes], body: bytes | tuple[int, int], limit: int) -> bytes:
    """The raw body kept in ``meta_f``; ``ValueError`` above ``limit`` bytes."""
    if isinstance(body, bytes):
        return body
    offset, length = body
    if length > limit:
        raise ValueError(f"body of {length} bytes")
    meta_f.seek(offset)
    return meta_f.read(length)
