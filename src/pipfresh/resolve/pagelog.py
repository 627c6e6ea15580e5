"""The index pages a resolution read: found in pip's log, with the validators from pip's cache.

A recorded resolution is as fresh as these pages: each is revalidated before the
resolution is reused (``revalidate``), and a file is trusted only where its page
lists its hash (``unattested``, ``Listings``).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from pipfresh.pip import httpcache, options
from pipfresh.pip.args import option_values
from pipfresh.pip.config import ConfigError, PipConfig
from pipfresh.pip.report import Item

WORKERS = 32  # pages asked at once (uv fetches 50 at once; pip, one after another)
_FETCHING = re.compile(r"Fetching project page and analyzing links: (\S+)")

_NOT_FOUND = re.compile(r"Could not fetch URL (\S+): 404 Client Error")

# Options pip reads a log file from: pipfresh needs its own --log for the dry run.
_LOG_OPTIONS = options.named(options.LOG)

_LOG_ENV = ("PIP_LOG", "PIP_LOG_FILE", "PIP_LOCAL_LOG")


@dataclass(frozen=True)
class Page:
    """An index page the resolution read, and how to ask whether it changed."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    missing: bool = False  # pip got 404: the page must still be absent


def pages_from_log(log: Path, http_dir: Path) -> tuple[list[Page], str | None]:
    """The pages pip's dry run read, with their validators; or why they cannot be known."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], f"cannot read pip's log: {exc.strerror}"
    if "Looking in links:" in text:
        return [], "find-links (local listings cannot be revalidated)"
    missing = set(_NOT_FOUND.findall(text))
    pages: dict[str, Page] = {}
    for url in fetched_pages(text):
        if url in pages:
            continue
        if "****" in url or "@" in urllib.parse.urlsplit(url).netloc:
            return [], "an index URL carries credentials"
        if not url.startswith(("http://", "https://")):
            return [], f"{url} is not an HTTP index page"
        if url in missing:
            pages[url] = Page(url, missing=True)
            continue
        page = with_validators(url, http_dir)
        if page is None:
            return [], f"{url} has no cached validator (ETag or Last-Modified)"
        pages[url] = page
    if not pages:
        return [], "pip read no index page"
    return list(pages.values()), None


def fetched_pages(log_text: str) -> list[str]:
    """The index pages pip fetched, in order, from its ``--log``."""
    return list(dict.fromkeys(_FETCHING.findall(log_text)))


def user_log(
    pip_args: Sequence[str], env: Mapping[str, str], prefix: str, config: PipConfig | None = None
) -> Path | None:
    """The log the user has pip write, if any (pip takes one ``--log``: pipfresh then
    adds none), as pip chooses it: the command line, then ``PIP_LOG`` and pip's
    configuration files (``PipConfig`` reads both as pip does)."""
    given = list(option_values(pip_args, _LOG_OPTIONS))
    if given:
        return Path(given[-1])
    try:
        values = (config or PipConfig.load(pip_args, env, prefix)).values()
    except ConfigError:
        return None
    found = next((values[k] for k in ("log", "log-file", "local-log") if values.get(k)), None)
    return Path(os.path.expanduser(found)) if found else None


def with_validators(url: str, http_dir: Path) -> Page | None:
    """The page at ``url`` with the validators of pip's cached answer (None: no usable one)."""
    try:
        entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, url))
        response = httpcache.read_entry(entry)
    except (OSError, ValueError, httpcache.CorruptEntry):
        return None
    etag = response.etag
    last_modified = response.headers.get("Last-Modified")
    if response.status != 200 or (etag is None and last_modified is None):
        return None
    return Page(url, etag=etag, last_modified=last_modified)


def unattested(items: Sequence[Item], pages: Sequence[Page], http_dir: Path) -> Item | None:
    """The first item whose sha256 no page of its project lists, in pip's cached copy.

    A reused report is installed with no download, so its hashes must be ones the
    index vouches for: a ``#sha256=`` (or a JSON hash) on the page, which is still
    there as long as the page answers 304. A hash pip worked out from its own
    download (a page that lists none) held for that run only: the file may since
    have been replaced under the same URL, and the page would not show it.
    """
    listed = Listings.of([p.url for p in pages if not p.missing], http_dir)
    return next((item for item in items if not listed.vouch_for(item)), None)


@dataclass(frozen=True)
class Listings:
    """The index pages a dry run read, by project, to ask which hashes they list."""

    bodies: Mapping[str, Sequence[bytes]]  # canonical project -> its pages, lower-cased

    @classmethod
    def of(
        cls, urls: Iterable[str], http_dir: Path, fetch: Callable[[str], bytes | None] | None = None
    ) -> Listings:
        """Each page as pip's cache holds it; one it does not hold (an index that sends no
        caching headers) is asked for again with ``fetch``, when given, all at once."""

        def body(url: str) -> bytes | None:
            try:
                entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, url))
                return httpcache.read_body(entry)
            except (OSError, ValueError, httpcache.CorruptEntry):
                return fetch(url) if fetch is not None else None

        unique = list(dict.fromkeys(urls))
        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(unique)))) as pool:
            found = list(pool.map(body, unique))
        bodies: dict[str, list[bytes]] = {}
        for url, page in zip(unique, found):
            if page is not None:
                bodies.setdefault(cls.project_of(url), []).append(page.lower())
        return cls(bodies)

    @staticmethod
    def project_of(url: str) -> str:
        """The canonical project a page URL (``.../simple/<project>/``) lists."""
        return str(canonicalize_name(url.rstrip("/").rsplit("/", 1)[-1]))

    def vouch_for(self, item: Item) -> bool:
        """Whether a page of the item's project lists its sha256."""
        digest = item.sha256.lower().encode()
        return any(
            digest in body for body in self.bodies.get(str(canonicalize_name(item.name)), [])
        )
