"""Revalidating index pages with conditional requests, many at once, as pip would send them.

pip revalidates its pages one after another; a recorded resolution needs every page
it read answered 304 (or 404 again) before it is reused, so they are asked in
parallel over kept-alive connections with pip's own index options
(``connections``) and pip's ``Accept`` and ``Accept-Encoding`` headers.

One round per run: given pip's HTTP cache, each answer goes into it as pip's
cachecontrol would take it (a 304 refreshes the entry's headers, a changed page is
stored whole), so the pages are verified in this run. A pip that trusts ``max-age``
(>= 26.2) then resolves without asking again (``pip_for``): every other index page is
dropped from its cache first, so whatever page it reads was verified in this run.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipfresh import __version__
from pipfresh.cache.share import IMMUTABLE
from pipfresh.errors import LinkInCache
from pipfresh.pip import httpcache, invoke
from pipfresh.pip.args import option_values
from pipfresh.resolve.connections import Connections, Response, Unreachable
from pipfresh.resolve.pagelog import WORKERS, Page

# What pip sends for an index page (invoke._internal.index.collector._get_simple_response).
_ACCEPT = ", ".join(
    [
        "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.v1+html; q=0.1",
        "text/html; q=0.01",
    ]
)

_ACCEPT_ENCODING = "gzip, deflate"  # what pip sends (pinned since 26.2, requests' default)

_PAGE_LIMIT = 64 << 20  # as httpcache.read_body
_FILE_WORKERS = 8  # files fetched at once behind pip's back: each is held whole until written


class Revalidator:
    """Conditional requests for index pages, with pip's TLS, proxy and timeout options;
    with ``http_dir`` (pip's HTTP cache), what they find goes into it (``fresh``)."""

    def __init__(
        self, pip_args: Sequence[str], env: Mapping[str, str], http_dir: Path | None = None
    ) -> None:
        self.http_dir = http_dir
        self.fresh: set[str] = set()  # pages whose entry in http_dir holds this run's answer
        self.connections = Connections(pip_args, env, per_host=WORKERS)

    def change(self, page: Page) -> str | None:
        """None when the page is as it was (304 for a page pip had, 404 for one it did not),
        else what happened to it, for the summary: changed, or could not be revalidated."""
        found = self.ask(page)
        return None if found is None else found.what

    def ask(self, page: Page) -> Change | None:
        """``change``, with a changed page's new body (a 200's) and validators."""
        headers = {
            "Accept": _ACCEPT,
            "Accept-Encoding": _ACCEPT_ENCODING,
            "Cache-Control": "max-age=0",
            "User-Agent": f"pipfresh/{__version__} (revalidating a resolution)",
        }
        if page.etag:
            headers["If-None-Match"] = page.etag
        if page.last_modified:
            headers["If-Modified-Since"] = page.last_modified
        try:
            response = self.connections.get(page.url, headers, _PAGE_LIMIT)
        except Unreachable as exc:
            return Change(page, f"could not be revalidated ({exc})")
        status, got, raw = response.status, response.headers, response.body
        body = None
        if status == 304 and not page.missing:
            self._refresh(page.url, got)
        elif status == 200 and raw is not None:
            self._store(page.url, headers, got, raw)
            body = _body(raw, got.get("Content-Encoding"))
        if status == (404 if page.missing else 304):
            return None
        if status in (200, 404):
            new = Page(page.url, got.get("ETag"), got.get("Last-Modified"))
            return Change(page, "changed", body, got.get("Content-Type", ""), new)
        return Change(page, f"could not be revalidated (HTTP {status})")

    def check(self, pages: Sequence[Page]) -> list[Change]:
        """What happened to each page that is not as it was, all asked at once."""
        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(pages)))) as pool:
            return [found for found in pool.map(self.ask, pages) if found is not None]

    def _refresh(self, url: str, headers: Any) -> None:
        """A 304 into pip's entry for ``url`` (its new ``Date`` makes it fresh for pip)."""
        if self.http_dir is None:
            return
        try:
            httpcache.refresh_entry(self.http_dir, url, _joined(headers))
        except (OSError, ValueError, LinkInCache, httpcache.CorruptEntry):
            return  # not fresh: dropped before pip runs (pip_for), so pip asks itself
        self.fresh.add(url)

    def _store(self, url: str, sent: Mapping[str, str], got: Any, body: bytes) -> None:
        """A changed page, read whole, into pip's cache as pip would keep it: the raw body
        (still gzipped), its headers, and the values of the request headers it varies on."""
        if self.http_dir is None:
            return
        headers = _joined(got)
        vary = _pip_keeps(headers, len(body))
        if vary is None or len(body) > _PAGE_LIMIT:
            return
        lowered = {k.lower(): v for k, v in sent.items()}
        try:
            httpcache.write_response(
                self.http_dir, url, headers, body, {h: lowered.get(h.lower()) for h in vary}
            )
        except (OSError, ValueError, LinkInCache):
            return
        self.fresh.add(url)

    def keep(self, url: str) -> bool:
        """A file pip will download (a wheel's ``.metadata``) into pip's cache, as pip's
        own download would leave it there (asked for as pip asks: not encoded, so the
        body is the file); whether it is there now."""
        headers = {
            "Accept-Encoding": "identity",
            "User-Agent": f"pipfresh/{__version__} (fetching ahead)",
        }
        response = self._ok(url, headers)
        if response is None or response.body is None:
            return False
        self._store(url, headers, response.headers, response.body)
        return url in self.fresh

    def keep_all(self, urls: Sequence[str]) -> int:
        """``keep`` each of ``urls``, all at once; how many are in pip's cache now."""
        if not urls:
            return 0
        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(urls)))) as pool:
            return sum(pool.map(self.keep, urls))

    def keep_behind(self, urls: Sequence[str], then: Callable[[str], None] | None = None) -> Behind:
        """``keep`` each of ``urls`` on threads of their own while the run goes on, and
        ``then`` (on that thread) each one kept."""

        def keep(url: str) -> bool:
            kept = self.keep(url)
            if kept and then is not None:
                then(url)
            return kept

        return Behind(keep, urls, _FILE_WORKERS)

    def read(self, url: str) -> bytes | None:
        """The page at ``url`` as the index serves it now; None on any failure (a redirect
        too). For a page pip's cache does not keep: what does it list?"""
        headers = {"Accept": _ACCEPT, "User-Agent": f"pipfresh/{__version__} (reading a page)"}
        response = self._ok(url, headers)
        if response is None or response.body is None:
            return None
        return _body(response.body, response.headers.get("Content-Encoding"))

    def _ok(self, url: str, headers: Mapping[str, str]) -> Response | None:
        """``GET url``'s answer when it is a 200 (a body over the limit: None in it)."""
        try:
            response = self.connections.get(url, headers, _PAGE_LIMIT)
        except Unreachable:
            return None
        return response if response.status == 200 else None

    def all_unchanged(self, pages: Sequence[Page]) -> tuple[int, str | None]:
        """How many pages are unchanged, and the first that is not, with what happened to it
        (``<url> changed``, ``<url> could not be revalidated (HTTP 500)``), None if all are."""
        changed = self.check(pages)
        first = f"{changed[0].page.url} {changed[0].what}" if changed else None
        return len(pages) - len(changed), first

    def pip_for(self, pip: invoke.PipInvocation) -> invoke.PipInvocation:
        """The pip to resolve with after this round. On a pip that trusts ``max-age``, with
        the partition's cache as its own: one that takes from that cache the pages this
        round verified (``fresh``), after every other index page (anything but a wheel,
        an sdist or a metadata file) was dropped from it, so any page pip reads was
        verified in this run. Otherwise ``pip`` as it is: it revalidates every page.
        """
        http_dir = self.http_dir
        if http_dir is None or not invoke.trusts_max_age(pip.program):
            return pip
        if pip.env.get("PIP_CACHE_DIR") != str(http_dir.parent) or pip.env.get("PIP_NO_CACHE_DIR"):
            return pip
        if any(option_values(pip.args, {"--cache-dir"})) or "--no-cache-dir" in pip.args:
            return pip
        try:
            drop_unverified(http_dir, self.fresh)
        except (OSError, LinkInCache):
            return pip
        return pip.trusting_cache()


@dataclass(frozen=True)
class Change:
    """A page that is not as it was: what happened (``changed``, ``could not be
    revalidated (...)``); for a changed page its new body, media type and validators
    (``now``; None for a page now gone, or a body over the limit)."""

    page: Page
    what: str
    body: bytes | None = None
    content_type: str = ""
    now: Page | None = None


def _body(raw: bytes, encoding: str | None) -> bytes | None:
    """A response's body with a gzip encoding undone; None when over the limit."""
    if encoding and encoding.strip().lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return None
    return raw if len(raw) <= _PAGE_LIMIT else None


def drop_unverified(http_dir: Path, fresh: Iterable[str]) -> int:
    """Remove from pip's cache every entry but those of the ``fresh`` pages and immutable
    files (wheels, sdists, metadata: pip never revalidates them), so pip must fetch any
    other page it reads. Returns how many entries went."""
    keep = {httpcache.entry_path(http_dir, url).name for url in fresh}
    if not http_dir.is_dir():
        return 0
    dropped = 0
    for entry in httpcache.iter_entry_files(http_dir):
        if entry.key in keep:
            continue
        try:
            if httpcache.read_entry(entry).kind in IMMUTABLE:
                continue
        except httpcache.CorruptEntry:
            pass  # pip cannot read it as a page either; dropped all the same
        httpcache.remove_entry(entry)
        dropped += 1
    return dropped


def _joined(headers: Any) -> dict[str, str]:
    """A response's headers as urllib3 gives them to cachecontrol: repeats joined."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        same = next((k for k in out if k.lower() == name.lower()), name)
        out[same] = f"{out[same]}, {value}" if same in out else value
    return out


def _pip_keeps(headers: Mapping[str, str], size: int) -> list[str] | None:
    """The headers a response varies on, if pip's cachecontrol would store it
    (``CacheController.cache_response``), else None."""
    h = httpcache.Headers(headers)
    length = h.get("content-length", "")
    control = h.get("cache-control", "").lower()
    vary = [v.strip() for v in h.get("vary", "").split(",") if v.strip()]
    if "no-store" in control or "*" in vary or (length.isdigit() and int(length) != size):
        return None
    if "etag" not in h:
        return None  # pipfresh revalidates by validator; without one pip asks itself
    return vary


class Behind:
    """Files fetched into pip's cache while pip resolves (``Revalidator.keep_behind``).

    Daemon threads, so that Ctrl-C never waits for a download: a file is written
    atomically or not at all. ``wait`` before using what they fetched; ``stop`` when
    the run goes another way (a failure of any kind leaves that fetch to pip).
    """

    def __init__(self, keep: Callable[[str], bool], urls: Sequence[str], workers: int) -> None:
        self._keep = keep
        self._urls: queue.SimpleQueue[str] = queue.SimpleQueue()
        for url in urls:
            self._urls.put(url)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.kept = 0  # files now in pip's cache
        self._threads = [
            threading.Thread(target=self._work, name="pipfresh-ahead", daemon=True)
            for _ in range(min(workers, len(urls)))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while not self._stopped.is_set():
            try:
                url = self._urls.get_nowait()
            except queue.Empty:
                return
            try:
                kept = self._keep(url)
            except Exception:  # pip fetches it then, and says what fails
                kept = False
            if kept:
                with self._lock:
                    self.kept += 1

    def wait(self) -> int:
        """Wait for every fetch; how many files are in pip's cache now."""
        for thread in self._threads:
            thread.join()
        return self.kept

    def stop(self) -> None:
        """Fetch no more (the one under way finishes, on its own thread)."""
        self._stopped.set()
