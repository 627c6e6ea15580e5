"""Revalidating index pages with conditional requests, many at once, as pip would send them.

pip revalidates its pages one after another; a recorded resolution needs every page
it read answered 304 (or 404 again) before it is reused, so they are asked in
parallel, with pip's own index options (certificates, proxies from the environment,
timeout) and pip's ``Accept`` header.
"""

from __future__ import annotations

import gzip
import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipfresh import __version__
from pipfresh.pip.args import option_values
from pipfresh.resolve.pagelog import WORKERS, Page

# What pip sends for an index page (invoke._internal.index.collector._get_simple_response).
_ACCEPT = ", ".join(
    [
        "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.v1+html; q=0.1",
        "text/html; q=0.01",
    ]
)

_TIMEOUT = 15.0  # pip's default --timeout


_PAGE_LIMIT = 64 << 20  # as httpcache.read_body


class Revalidator:
    """Conditional requests for index pages, with pip's TLS, proxy and timeout options."""

    def __init__(self, pip_args: Sequence[str], env: Mapping[str, str]) -> None:
        values = _values(pip_args, env)
        self.timeout = float(values.get("timeout") or _TIMEOUT)
        trusted = set(values.get("trusted-host", "").split())
        self.trusted = {h.split(":")[0] for h in trusted} | trusted
        cafile = values.get("cert") or env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
        verified = ssl.create_default_context(cafile=cafile or None)
        if values.get("client-cert"):
            verified.load_cert_chain(values["client-cert"])
        insecure = ssl.create_default_context()  # for --trusted-host hosts, as pip does
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        proxy = values.get("proxy")
        common: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if proxy:
            common.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
        self.openers = {
            trusted: urllib.request.build_opener(
                *common, urllib.request.HTTPSHandler(context=insecure if trusted else verified)
            )
            for trusted in (False, True)
        }

    def change(self, page: Page) -> str | None:
        """None when the page is as it was (304 for a page pip had, 404 for one it did not),
        else what happened to it, for the summary: changed, or could not be revalidated."""
        found = self.ask(page)
        return None if found is None else found.what

    def ask(self, page: Page) -> Change | None:
        """``change``, with a changed page's new body (a 200's) and validators."""
        headers = {
            "Accept": _ACCEPT,
            "Cache-Control": "max-age=0",
            "User-Agent": f"pipfresh/{__version__} (revalidating a resolution)",
        }
        if page.etag:
            headers["If-None-Match"] = page.etag
        if page.last_modified:
            headers["If-Modified-Since"] = page.last_modified
        request = urllib.request.Request(page.url, headers=headers)
        body, got = None, None
        try:
            with self._opener(page.url).open(request, timeout=self.timeout) as response:
                status, got = int(response.status), response.headers
                body = _body(response.read(_PAGE_LIMIT + 1), got.get("Content-Encoding"))
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            why = f"could not be revalidated ({getattr(reason, 'strerror', None) or reason})"
            return Change(page, why)
        if status == (404 if page.missing else 304):
            return None
        if status in (200, 404):
            if got is None:
                return Change(page, "changed")
            new = Page(page.url, got.get("ETag"), got.get("Last-Modified"))
            return Change(page, "changed", body, got.get("Content-Type", ""), new)
        return Change(page, f"could not be revalidated (HTTP {status})")

    def check(self, pages: Sequence[Page]) -> list[Change]:
        """What happened to each page that is not as it was, all asked at once."""
        with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(pages)))) as pool:
            return [found for found in pool.map(self.ask, pages) if found is not None]

    def read(self, url: str) -> bytes | None:
        """The page at ``url`` as the index serves it now; None on any failure (a redirect
        too). For a page pip's cache does not keep: what does it list?"""
        headers = {"Accept": _ACCEPT, "User-Agent": f"pipfresh/{__version__} (reading a page)"}
        request = urllib.request.Request(url, headers=headers)
        try:
            with self._opener(url).open(request, timeout=self.timeout) as response:
                body: bytes = response.read(_PAGE_LIMIT + 1)
        except (OSError, ValueError, http.client.HTTPException):
            return None
        return body if len(body) <= _PAGE_LIMIT else None

    def _opener(self, url: str) -> urllib.request.OpenerDirector:
        host = urllib.parse.urlsplit(url)
        return self.openers[bool({host.hostname, host.netloc} & self.trusted)]

    def all_unchanged(self, pages: Sequence[Page]) -> tuple[int, str | None]:
        """How many pages are unchanged, and the first that is not, with what happened to it
        (``<url> changed``, ``<url> could not be revalidated (HTTP 500)``), None if all are."""
        changed = self.check(pages)
        first = f"{changed[0].page.url} {changed[0].what}" if changed else None
        return len(pages) - len(changed), first


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect means the page moved: pip resolves, pipfresh does not guess."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _values(pip_args: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The connection options pip would use (command line over environment)."""
    names = ("timeout", "trusted-host", "cert", "client-cert", "proxy")
    out = {n: env.get(f"PIP_{n.upper().replace('-', '_')}", "") for n in names}
    for name in names:
        given = list(option_values(pip_args, {f"--{name}"}))
        if given:
            out[name] = " ".join(given) if name == "trusted-host" else given[-1]
    return {k: v for k, v in out.items() if v}
