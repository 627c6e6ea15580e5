"""The HTTP pieces the index shares with PyPI: PEP 691 content negotiation, gzip,
ETag matching, ``Range`` parsing, and the response a route hands the server.

Each is a pure function of header values, so the routes stay declarative and
the server only writes what it is given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

__all__ = [
    "CONTENT_TYPES",
    "HTML_V1",
    "JSON_V1",
    "TEXT_HTML",
    "Response",
    "accepts_gzip",
    "etag",
    "etag_matches",
    "negotiate",
    "not_found",
    "parse_range",
    "plain",
    "redirect",
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
CONTENT_TYPES = {TEXT_HTML: "text/html; charset=utf-8", HTML_V1: HTML_V1, JSON_V1: JSON_V1}


def etag(*parts: bytes) -> str:
    """A strong validator that changes whenever any of ``parts`` does."""
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


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))


@dataclass
class Response:
    """What a route answers; ``kind`` is the counters' bucket for it."""

    status: int
    kind: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: tuple[Path, int, int] | None = None  # (path, offset, length) streamed instead of body
    filename: str | None = None  # distribution whose body this is, for the downloads count

    @property
    def length(self) -> int:
        return self.file[2] if self.file is not None else len(self.body)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
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


def redirect(location: str) -> Response:
    return Response(
        HTTPStatus.MOVED_PERMANENTLY,
        "other",
        [("Location", location), ("Content-Type", "text/plain; charset=utf-8")],
        body=f"moved to {location}\n".encode(),
    )


def plain(status: int, kind: str, text: str) -> Response:
    return Response(status, kind, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def not_found() -> Response:
    return plain(HTTPStatus.NOT_FOUND, "other", "not found\n")
