"""A loopback package index that behaves like PyPI wherever HTTP caching matters."""

from __future__ import annotations

from pipfresh.testing.index.core import (
    API_VERSION,
    FILE_CACHE_CONTROL,
    HTML_V1,
    JSON_V1,
    KINDS,
    TEXT_HTML,
    Counters,
    DistFile,
    PackageIndex,
    Record,
    accepts_gzip,
    main,
    negotiate,
    parse_dist_filename,
)

__all__ = [
    "API_VERSION",
    "FILE_CACHE_CONTROL",
    "HTML_V1",
    "JSON_V1",
    "KINDS",
    "TEXT_HTML",
    "Counters",
    "DistFile",
    "PackageIndex",
    "Record",
    "accepts_gzip",
    "main",
    "negotiate",
    "parse_dist_filename",
]
