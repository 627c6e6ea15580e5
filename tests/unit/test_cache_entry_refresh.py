"""A 304 taken into pip's cached entry, a changed page stored whole, and the pages not
verified in a run dropped: each read back by pip's own cachecontrol, as pip reads them."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import pytest
from pip._internal.network.cache import SafeFileCache
from pip._vendor.cachecontrol.controller import CacheController
from pip._vendor.requests import PreparedRequest, Request

from pipfresh.pip import httpcache
from pipfresh.resolve.revalidate import _ACCEPT, _ACCEPT_ENCODING, drop_unverified

URL = "https://index.test/simple/lib/"


def _request(url: str = URL, accept_encoding: str = _ACCEPT_ENCODING) -> PreparedRequest:
    headers = {"Accept": _ACCEPT, "Accept-Encoding": accept_encoding}
    return Request("GET", url, headers=headers).prepare()


def _date(ago: float) -> str:
    return email.utils.formatdate(time.time() - ago, usegmt=True)


def _page_headers(ago: float) -> dict[str, str]:
    return {
        "Content-Type": "application/vnd.pypi.simple.v1+json",
        "Cache-Control": "max-age=600, public",
        "ETag": '"v1"',
        "Date": _date(ago),
        "Vary": "Accept, Accept-Encoding",
        "Content-Length": "13",
    }


def _controller(http_dir: Path) -> CacheController:
    return CacheController(SafeFileCache(str(http_dir)))


def _vary() -> dict[str, str | None]:
    return {"Accept": _ACCEPT, "Accept-Encoding": _ACCEPT_ENCODING}


def test_a_304_makes_a_stale_entry_fresh_for_pip_and_keeps_its_body(tmp_path: Path) -> None:
    http_dir = tmp_path / "http-v2"
    httpcache.write_response(http_dir, URL, _page_headers(3600), b'{"files": []}', _vary())
    assert _controller(http_dir).cached_request(_request()) is False  # stale: pip would ask

    answer = {
        "Date": _date(0),
        "ETag": '"v1"',
        "Content-Length": "0",
        "cache-control": "max-age=600",
    }
    httpcache.refresh_entry(http_dir, URL, answer)

    cached = _controller(http_dir).cached_request(_request())
    assert cached is not False and cached.status == 200
    assert cached.read() == b'{"files": []}'
    assert cached.headers["Content-Length"] == "13"  # a 304's length is not the body's
    assert cached.headers["Date"] == answer["Date"]
    assert [k for k in cached.headers if k.lower() == "cache-control"] == ["cache-control"]


def test_a_refreshed_entry_still_varies_as_pip_stored_it(tmp_path: Path) -> None:
    http_dir = tmp_path / "http-v2"
    httpcache.write_response(http_dir, URL, _page_headers(3600), b'{"files": []}', _vary())
    httpcache.refresh_entry(http_dir, URL, {"Date": _date(0)})
    assert _controller(http_dir).cached_request(_request(accept_encoding="br")) is False


def test_there_is_no_entry_to_refresh_without_both_files(tmp_path: Path) -> None:
    http_dir = tmp_path / "http-v2"
    with pytest.raises(httpcache.CorruptEntry):
        httpcache.refresh_entry(http_dir, URL, {"Date": _date(0)})
    httpcache.write_response(http_dir, URL, _page_headers(0), b'{"files": []}', _vary())
    meta = httpcache.entry_path(http_dir, URL)
    meta.with_name(meta.name + ".body").unlink()
    with pytest.raises(httpcache.CorruptEntry):
        httpcache.refresh_entry(http_dir, URL, {"Date": _date(0)})


def test_the_legacy_format_keeps_the_body_inside(tmp_path: Path) -> None:
    http_dir = tmp_path / "http"
    httpcache.write_response(http_dir, URL, _page_headers(3600), b'{"files": []}', _vary())
    httpcache.refresh_entry(http_dir, URL, {"Date": _date(0)})
    entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, URL))
    assert httpcache.read_body(entry) == b'{"files": []}'
    assert httpcache.read_entry(entry).headers["Date"]


def test_every_page_but_the_verified_ones_is_dropped_and_files_stay(tmp_path: Path) -> None:
    http_dir = tmp_path / "http-v2"
    stale = "https://index.test/simple/other/"
    wheel = "https://files.test/lib-1.0-py3-none-any.whl.metadata"
    for url in (URL, stale):
        httpcache.write_response(http_dir, url, _page_headers(0), b'{"files": []}', _vary())
    metadata = b"Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n"
    httpcache.write_response(http_dir, wheel, {"ETag": '"m"'}, metadata)

    assert drop_unverified(http_dir, {URL}) == 1
    assert _controller(http_dir).cached_request(_request()) is not False
    assert _controller(http_dir).cached_request(_request(stale)) is False
    assert not httpcache.entry_path(http_dir, stale).exists()
    assert httpcache.entry_path(http_dir, wheel).exists()
