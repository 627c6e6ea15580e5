"""Where pip keeps the entry for a URL: cachecontrol's key, kept compatible by hand.

pip's cachecontrol names an entry ``sha224(cache_url(url))`` and nests it five
directories deep (``a/b/c/d/e/<key>``). The normalisation below copies
``CacheController._urlnorm`` (RFC 3986 appendix B): importing pip's vendored
cachecontrol would tie pipfresh to one pip's internals, so this is the one place
that must follow cachecontrol if it ever changes, and ``tests/test_httpcache.py``
checks it against real pip-written entries.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pipfresh.pip.httpcache.model import Format

# cachecontrol's controller.URI (RFC 3986 appendix B).
_URI_RE = re.compile(r"^(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?")


_KEY_RE = re.compile(r"[0-9a-f]{56}")


_HEX_DIGIT = frozenset("0123456789abcdef")


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
