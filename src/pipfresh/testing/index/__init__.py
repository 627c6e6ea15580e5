"""A loopback package index that behaves like PyPI wherever HTTP caching matters.

pipfresh's value is in what pip does *not* download again, so the tests and
benchmarks need an index whose caching headers, ETags, 304s, gzip and PEP 658
metadata match PyPI's, and which counts every byte it sends.  Distributions
are plain files in one flat directory; pages are rendered on every request, so
publishing a file changes the pages (and their ETags) at once.

``core`` holds ``PackageIndex``; ``files`` reads distributions, ``pages``
renders, ``responses`` and ``http`` decide headers, ``server`` writes them,
``counters`` counts them and ``command`` is ``python -m pipfresh.testing.index``.
"""

from __future__ import annotations

from pipfresh.testing.index.command import main
from pipfresh.testing.index.core import PackageIndex
from pipfresh.testing.index.counters import KINDS, Counters, Record
from pipfresh.testing.index.files import DistFile, parse_dist_filename
from pipfresh.testing.index.http import HTML_V1, JSON_V1, TEXT_HTML, accepts_gzip, negotiate
from pipfresh.testing.index.pages import API_VERSION
from pipfresh.testing.index.responses import FILE_CACHE_CONTROL

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
