"""What pip's HTTP cache holds, as data: kinds, problems, a response, an entry's files."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
