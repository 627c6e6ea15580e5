"""What the index served: one ``Record`` per response and ``Counters`` over them.

Tests assert on these (``c.file_bytes == 0``) to prove what pip did not
download again, so every byte the index sends is counted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["KINDS", "Counters", "Record"]

KINDS = ("index_200", "index_304", "file", "metadata", "other")


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
