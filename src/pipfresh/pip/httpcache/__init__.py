"""Read, classify and validate entries of pip's HTTP cache (``http/`` and ``http-v2/``).

pip keeps one cache entry per URL under ``sha224(cache_url(url))``, nested
five directories deep.  ``http/`` (pip <= 23.2) stores the response body
inside the msgpack metadata file; ``http-v2/`` (pip >= 23.3) stores it in a
sibling ``<key>.body`` file and uses the entry only when both files exist.

pip trusts these files: metadata that decodes to the wrong shape crashes it,
and a truncated body is served as if it were complete.  This package finds
such entries *before* pip runs, reading whole metadata files only when they
are small and only the first few KiB (plus a zip's central directory) of any
body, so a scan over thousands of entries stays cheap.

One job per module: ``model`` (the data), ``keys`` (cachecontrol's key),
``files`` (an entry's files on disk), ``metadata`` (the msgpack metadata file),
``sniff`` (what a body is), ``entries`` (reading, checking, writing an entry),
``legacy`` (the old ``http/`` format's inline body). Callers use the names below.
"""

from pipfresh.pip.httpcache.entries import (
    check_entry,
    read_body,
    read_entry,
    refresh_entry,
    write_response,
)
from pipfresh.pip.httpcache.files import (
    entry_files_for,
    group_files,
    hex_dirs,
    iter_entry_files,
    remove_entry,
)
from pipfresh.pip.httpcache.keys import cache_url, entry_path
from pipfresh.pip.httpcache.model import (
    HEAD_BYTES,
    INDEX_CONTENT_TYPES,
    CachedResponse,
    CorruptEntry,
    EntryFiles,
    Format,
    Headers,
    Kind,
    Problem,
)
from pipfresh.pip.httpcache.sniff import classify

__all__ = [
    "HEAD_BYTES",
    "INDEX_CONTENT_TYPES",
    "CachedResponse",
    "CorruptEntry",
    "EntryFiles",
    "Format",
    "Headers",
    "Kind",
    "Problem",
    "cache_url",
    "check_entry",
    "classify",
    "entry_files_for",
    "entry_path",
    "group_files",
    "hex_dirs",
    "iter_entry_files",
    "read_body",
    "read_entry",
    "refresh_entry",
    "remove_entry",
    "write_response",
]
