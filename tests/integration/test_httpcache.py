"""pipfresh.httpcache against entries written by pip's own cache code (and by hand for http/)."""

from __future__ import annotations

import base64
import email.utils
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pip._internal.network.cache import SafeFileCache
from pip._internal.utils.filesystem import adjacent_tmp_file
from pip._vendor.cachecontrol.cache import DictCache
from pip._vendor.cachecontrol.controller import CacheController
from pip._vendor.cachecontrol.serialize import Serializer
from pip._vendor.requests import PreparedRequest
from pip._vendor.urllib3 import HTTPResponse

from conftest import pip_wheel, python_for
from pipfresh.cache import fs
from pipfresh.errors import LinkInCache
from pipfresh.pip import httpcache as hc
from pipfresh.pip.httpcache import CachedResponse, CorruptEntry, EntryFiles, Kind, Problem
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import PackageIndex

# -- bodies ---------------------------------------------------------------------------


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


WHEEL = _zip(
    {
        "demo/__init__.py": "x = 1\n" * 2000,
        "demo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
        "demo-1.0.dist-info/RECORD": "",
    }
)
ZIP_SDIST = _zip({"demo-1.0/PKG-INFO": "Metadata-Version: 2.1\n", "demo-1.0/setup.py": ""})


def _targz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"Metadata-Version: 2.1\nName: demo\n"
        info = tarfile.TarInfo("demo-1.0/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARGZ = _targz()
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: idna\n"
JSON_PAGE = json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": []}).encode()
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><body><a href='demo-1.0.tar.gz'>demo-1.0.tar.gz</a></body></html>"
)

JSON_CT = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
OCTET = {"Content-Type": "application/octet-stream"}

# (name, body, extra headers, expected kind)
CASES = [
    ("json-page", JSON_PAGE, JSON_CT, Kind.INDEX_PAGE),
    ("html-page", HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"}, Kind.INDEX_PAGE),
    (
        "gzipped-page",
        gzip.compress(JSON_PAGE),
        {**JSON_CT, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        Kind.INDEX_PAGE,
    ),
    # no telling Content-Type: the decoded body says it is a page
    (
        "gzipped-untyped-page",
        gzip.compress(HTML_PAGE),
        {"Content-Encoding": "gzip"},
        Kind.INDEX_PAGE,
    ),
    ("wheel", WHEEL, OCTET, Kind.WHEEL),
    ("zip-sdist", ZIP_SDIST, OCTET, Kind.SDIST),
    ("targz-sdist", TARGZ, OCTET, Kind.SDIST),
    ("metadata", METADATA, OCTET, Kind.METADATA),
    ("other", b"just some text", {"Content-Type": "text/plain"}, Kind.OTHER),
]
CASE_IDS = [c[0] for c in CASES]

URL = "https://files.example.org/packages/demo-1.0-py3-none-any.whl"


# -- writing entries the way pip does -------------------------------------------------


def _request(url: str) -> PreparedRequest:
    req = PreparedRequest()
    req.prepare(method="GET", url=url, headers={"Accept-Encoding": "gzip, deflate"})
    return req


def _response(body: bytes, headers: dict[str, str], status: int = 200) -> HTTPResponse:
    return HTTPResponse(
        body=io.BytesIO(body),
        headers=headers,
        status=status,
        reason="OK",
        version=11,
        preload_content=False,
        decode_content=False,
    )


def _full_headers(body: bytes, headers: dict[str, str]) -> dict[str, str]:
    return {"ETag": '"v1"', "Content-Length": str(len(body)), **headers}


def pip_store(
    http_v2: Path, url: str, body: bytes, headers: dict[str, str], status: int = 200
) -> EntryFiles:
    """Cache a response with pip's own CacheController + SafeFileCache (the http-v2 writer)."""
    controller = CacheController(SafeFileCache(str(http_v2)))
    controller.cache_response(_request(url), _response(body, headers, status), body)
    return hc.entry_files_for(hc.entry_path(http_v2, url))


def pip_store_v2(http_v2: Path, url: str, body: bytes, headers: dict[str, str]) -> EntryFiles:
    return pip_store(http_v2, url, body, _full_headers(body, headers))


def old_store(http: Path, url: str, body: bytes, headers: dict[str, str]) -> EntryFiles:
    """An http/ entry as pip 23.0.1 wrote it: cc=4 msgpack with the body and "strict" inside."""
    data = {
        "response": {
            "body": body,
            "headers": _full_headers(body, headers),
            "status": 200,
            "version": 11,
            "reason": "OK",
            "strict": 0,
            "decode_content": False,
        },
        "vary": {},
    }
    return write_meta(http, url, b"cc=4," + msgpack.packb(data, use_bin_type=True))


def serializer_store(http: Path, url: str, body: bytes, headers: dict[str, str]) -> EntryFiles:
    """An http/ entry from pip's vendored Serializer with the body inline."""
    blob = Serializer().dumps(_request(url), _response(body, _full_headers(body, headers)), body)
    return write_meta(http, url, blob)


def write_meta(http_dir: Path, url: str, blob: bytes, body: bytes | None = None) -> EntryFiles:
    meta = hc.entry_path(http_dir, url)
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_bytes(blob)
    if body is not None:
        Path(f"{meta}.body").write_bytes(body)
    return hc.entry_files_for(meta)


def refresh(entry: EntryFiles) -> EntryFiles:
    """The same entry as the directory holds it now."""
    return hc.entry_files_for(entry.paths[0].parent / entry.key)


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    return tmp_path / "http-v2"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    return tmp_path / "http"


# -- URLs and paths -------------------------------------------------------------------

URLS = [
    "https://files.pythonhosted.org/packages/ab/cd/demo-1.0-py3-none-any.whl",
    "https://Files.PythonHosted.ORG/packages/ab/cd/demo-1.0-py3-none-any.whl",
    "HTTPS://files.pythonhosted.org/packages/demo-1.0.tar.gz#sha256=" + "0" * 64,
    "https://pypi.org/simple/demo/",
    "https://pypi.org",
    "https://pypi.org/simple/demo/?format=json",
    "https://pypi.org/simple/demo/?",
    "https://User:Secret@Example.com:8080/Simple/Demo/",
]


@pytest.mark.parametrize("url", URLS)
def test_entry_path_matches_pip(tmp_path: Path, url: str) -> None:
    assert hc.cache_url(url) == CacheController.cache_url(url)
    pip_path = SafeFileCache(str(tmp_path))._get_cache_path(CacheController.cache_url(url))
    assert hc.entry_path(tmp_path, url) == Path(pip_path)


def test_cache_url_normalisation() -> None:
    assert hc.cache_url("HTTPS://PyPI.org") == "https://pypi.org/"
    # the path keeps its case, the fragment is dropped
    assert hc.cache_url("https://X.org/A/b.whl#sha256=ff") == "https://x.org/A/b.whl"
    with pytest.raises(ValueError):
        hc.cache_url("/simple/demo/")


def test_entry_path_of_requests_prepared_url(tmp_path: Path) -> None:
    """pip hashes the URL requests prepared; for ASCII URLs that lands on the same file."""
    url = "https://Files.Example.ORG/demo-1.0.tar.gz#sha256=abc"
    prepared = _request(url).url
    assert prepared is not None
    assert hc.entry_path(tmp_path, url) == hc.entry_path(tmp_path, prepared)


# -- classification -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "headers", "kind"), CASES, ids=CASE_IDS)
def test_classify_http_v2(
    v2: Path, name: str, body: bytes, headers: dict[str, str], kind: Kind
) -> None:
    entry = pip_store_v2(v2, f"https://example.org/{name}", body, headers)
    assert entry.meta is not None and entry.body is not None
    assert entry.body.read_bytes() == body  # raw bytes off the wire, still encoded
    response, problem = hc.check_entry(entry)
    assert problem is None
    assert response is not None
    assert response.kind is kind
    assert response.body_size == len(body) == response.content_length
    assert response.status == 200
    assert response.etag == '"v1"'
    assert response.headers["content-length"] == response.headers["CONTENT-LENGTH"]
    assert hc.read_entry(entry) == response


@pytest.mark.parametrize("store", [old_store, serializer_store], ids=["pip23-old", "serializer"])
@pytest.mark.parametrize(("name", "body", "headers", "kind"), CASES, ids=CASE_IDS)
def test_classify_http(
    v1: Path, store: Any, name: str, body: bytes, headers: dict[str, str], kind: Kind
) -> None:
    entry = store(v1, f"https://example.org/{name}", body, headers)
    assert entry.fmt == "http" and entry.body is None
    response, problem = hc.check_entry(entry)
    assert problem is None
    assert response is not None
    assert response.kind is kind
    assert response.body_size == len(body)


def test_classify_function() -> None:
    assert hc.classify(JSON_CT, b"") is Kind.INDEX_PAGE
    assert hc.classify({"content-type": "TEXT/HTML"}, b"") is Kind.INDEX_PAGE
    assert hc.classify({}, WHEEL[:100], WHEEL) is Kind.WHEEL
    assert hc.classify({}, ZIP_SDIST) is Kind.SDIST
    assert hc.classify({}, TARGZ[:64]) is Kind.SDIST
    assert hc.classify({}, METADATA) is Kind.METADATA
    assert hc.classify({}, b'  {"files": []}') is Kind.INDEX_PAGE
    deflated = zlib.compress(HTML_PAGE)
    assert hc.classify({"Content-Encoding": "deflate"}, deflated) is Kind.INDEX_PAGE
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(METADATA) + raw_deflate.flush()
    assert hc.classify({"Content-Encoding": "deflate"}, raw) is Kind.METADATA
    assert hc.classify({"Content-Encoding": "br"}, b"\x0b\x02\x80") is Kind.OTHER
    # only the first bytes of a gzipped page are needed
    assert hc.classify({"Content-Encoding": "gzip"}, gzip.compress(HTML_PAGE * 500)[:200]) is (
        Kind.INDEX_PAGE
    )


def test_classify_reads_zip_from_path(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(WHEEL)
    assert hc.classify(OCTET, WHEEL[:64], path) is Kind.WHEEL


def test_large_http_entry_is_read_without_loading_the_body(v1: Path) -> None:
    big = _zip({"big/data.bin": os.urandom(1 << 20).hex(), "big-1.0.dist-info/WHEEL": ""})
    entry = old_store(v1, "https://example.org/big-1.0-py3-none-any.whl", big, OCTET)
    assert entry.meta is not None and entry.meta.stat().st_size > len(big)
    response, problem = hc.check_entry(entry)
    assert problem is None
    assert response is not None and response.kind is Kind.WHEEL
    assert response.body_size == len(big)


# -- what pip itself does with the entries --------------------------------------------


def test_read_body_gives_what_pip_parsed(v1: Path, v2: Path) -> None:
    """A page's whole body, its gzip undone, from either format (reuse reads its hashes)."""
    page = b'{"files":[{"hashes":{"sha256":"' + b"ab" * 32 + b'"}}]}' * 200
    headers = {"Content-Type": "application/vnd.pypi.simple.v1+json", "Content-Encoding": "gzip"}
    url = "https://pypi.org/simple/demo/"
    for entry in (
        pip_store_v2(v2, url, gzip.compress(page), headers),
        old_store(v1, url, gzip.compress(page), headers),
        serializer_store(v1, url + "x/", page, {}),
    ):
        assert hc.read_body(entry) == page
    with pytest.raises(ValueError):
        hc.read_body(pip_store_v2(v2, url, gzip.compress(page), headers), limit=1000)
    with pytest.raises(hc.CorruptEntry):
        hc.read_body(hc.entry_files_for(hc.entry_path(v2, "https://pypi.org/simple/none/")))


def test_pip_reads_what_we_call_healthy(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert hc.check_entry(entry)[1] is None
    cached = CacheController(SafeFileCache(str(v2)))._load_from_cache(_request(URL))
    assert cached is not None
    assert cached.read(decode_content=False) == WHEEL


def test_a_written_response_is_served_fresh_by_pip(v1: Path, v2: Path, tmp_path: Path) -> None:
    """``write_response`` writes what pip's own cachecontrol reads back, without asking the
    server: healthy, a wheel, fresh for its ``max-age``; in http-v2 the body is a link."""
    body = tmp_path / "demo-1.0-py3-none-any.whl"
    body.write_bytes(WHEEL)
    headers = {
        **OCTET,
        "Content-Length": str(len(WHEEL)),
        "Date": email.utils.formatdate(usegmt=True),
        "Cache-Control": "max-age=600",
    }
    hc.write_response(v2, URL, headers, body)
    entry = hc.entry_files_for(hc.entry_path(v2, URL))
    response, problem = hc.check_entry(entry)
    assert problem is None and response is not None and response.kind is Kind.WHEEL
    assert entry.body is not None and entry.body.stat().st_ino == body.stat().st_ino
    cached = CacheController(SafeFileCache(str(v2))).cached_request(_request(URL))
    assert cached is not False and cached.read(decode_content=False) == WHEEL

    hc.write_response(v1, URL, headers, body)  # pip <= 23.2: the body inside
    entry = hc.entry_files_for(hc.entry_path(v1, URL))
    assert hc.check_entry(entry)[1] is None and entry.body is None
    blob = {CacheController.cache_url(URL): hc.entry_path(v1, URL).read_bytes()}
    cached = CacheController(DictCache(blob)).cached_request(_request(URL))
    assert cached is not False and cached.read(decode_content=False) == WHEEL

    link_target = tmp_path / "elsewhere"
    link_target.mkdir()
    other = "https://example.org/a.whl"
    top = hc.entry_path(v2, other).relative_to(v2).parts[0]
    shutil.rmtree(v2 / top, ignore_errors=True)
    (v2 / top).symlink_to(link_target)
    with pytest.raises(LinkInCache):
        hc.write_response(v2, other, headers, body)
    assert not any(link_target.iterdir())


def test_304_revalidation_keeps_entry_healthy(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, JSON_PAGE, JSON_CT)
    before = entry.fingerprint()
    controller = CacheController(SafeFileCache(str(v2)))
    not_modified = _response(b"", {"ETag": '"v1"', "Cache-Control": "max-age=600"}, status=304)
    controller.update_cached_response(_request(URL), not_modified)
    entry = refresh(entry)
    assert entry.fingerprint() != before  # metadata was replaced, body kept
    response, problem = hc.check_entry(entry)
    assert problem is None and response is not None
    assert response.cache_control == "max-age=600"
    assert response.body_size == len(JSON_PAGE)


def test_permanent_redirect_is_healthy(v2: Path) -> None:
    """cachecontrol stores 301/308 with an empty body whatever Content-Length said."""
    headers = {"Location": "https://pypi.org/simple/demo/", "Content-Length": "20"}
    entry = pip_store(v2, "https://pypi.org/simple/Demo/", b"x" * 20, headers, status=301)
    assert entry.body is not None and entry.body.stat().st_size == 0
    response, problem = hc.check_entry(entry)
    assert problem is None and response is not None
    assert response.status == 301 and response.kind is Kind.OTHER


# -- problems -------------------------------------------------------------------------


def _problem(entry: EntryFiles) -> Problem | None:
    return hc.check_entry(refresh(entry))[1]


class _Row(NamedTuple):
    entry: EntryFiles
    response: CachedResponse | None
    problem: Problem | None


def _scan(http_dir: Path) -> list[_Row]:
    """Every entry of one cache directory, checked: what health reads, entry by entry."""
    return [_Row(e, *hc.check_entry(e)) for e in hc.iter_entry_files(http_dir)]


def _assert_corrupt(entry: EntryFiles, problem: Problem) -> None:
    entry = refresh(entry)
    assert hc.check_entry(entry) == (None, problem)
    with pytest.raises(CorruptEntry) as info:
        hc.read_entry(entry)
    assert info.value.problem is problem


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage", "prefix"),
        (b"cc=4," + msgpack.packb(7), "int"),
        (b"cc=4," + msgpack.packb([1, 2]), "list"),
        (b"cc=4," + msgpack.packb({"response": 7}), "response int"),
        (b"cc=4," + msgpack.packb({"vary": {}}), "no response"),
        (b"cc=4,\xc1", "invalid type byte"),
        (b"cc=4,\x81\xa8response", "truncated"),
    ],
)
def test_unreadable_metadata(v2: Path, blob: bytes, why: str) -> None:
    entry = write_meta(v2, URL, blob, body=WHEEL)
    _assert_corrupt(entry, Problem.UNREADABLE_METADATA)


def _good_meta(**response: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "body": b"",
        "headers": {"Content-Length": str(len(WHEEL))},
        "status": 200,
        "version": 11,
        "reason": "OK",
        "decode_content": False,
    }
    base.update(response)
    return {"response": {k: v for k, v in base.items() if v is not None}, "vary": {}}


@pytest.mark.parametrize(
    "data",
    [
        _good_meta(headers={"Content-Length": 5}),
        _good_meta(headers={1: "x"}),
        _good_meta(status="200"),
        _good_meta(status=True),
        _good_meta(body="text"),
        _good_meta(body=None),
        _good_meta(extra=1),  # pip passes it to HTTPResponse() -> TypeError
        {**_good_meta(), "vary": {"Accept": 3}},
        {**_good_meta(), "vary": []},
    ],
)
def test_wrong_shape_is_unreadable(v2: Path, data: dict[str, Any]) -> None:
    blob = b"cc=4," + msgpack.packb(data, use_bin_type=True, strict_types=False)
    _assert_corrupt(write_meta(v2, URL, blob, body=WHEEL), Problem.UNREADABLE_METADATA)


def test_metadata_cut_short_is_unreadable(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None
    blob = entry.meta.read_bytes()
    entry.meta.write_bytes(blob[:-3])
    _assert_corrupt(entry, Problem.UNREADABLE_METADATA)
    entry.meta.write_bytes(blob + b"\x00")  # trailing bytes
    _assert_corrupt(entry, Problem.UNREADABLE_METADATA)


def _legacy_v2_blob(body: bytes) -> bytes:
    """cachecontrol's cc=2: zlib-compressed JSON with base64 fields (pip 23.0 could read it)."""
    b64 = lambda s: base64.b64encode(s).decode()  # noqa: E731
    data = {
        "response": {
            "body": b64(body),
            "headers": {b64(b"Content-Length"): b64(str(len(body)).encode())},
            "status": 200,
            "version": 11,
            "reason": b64(b"OK"),
            "strict": 0,
            "decode_content": False,
        },
        "vary": {},
    }
    return b"cc=2," + zlib.compress(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("blob", "problem"),
    [
        (_legacy_v2_blob(WHEEL), Problem.STALE_FORMAT),
        (b"cc=1,\x80\x04N.", Problem.STALE_FORMAT),
        (b"cc=3," + msgpack.packb(_good_meta()), Problem.STALE_FORMAT),
        (b"cc=5," + msgpack.packb(_good_meta()), Problem.UNSUPPORTED_FORMAT),
    ],
)
def test_old_and_future_serializations(v1: Path, blob: bytes, problem: Problem) -> None:
    _assert_corrupt(write_meta(v1, URL, blob), problem)


def test_missing_body(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    entry.body.unlink()
    _assert_corrupt(entry, Problem.MISSING_BODY)


def test_body_that_is_a_directory_is_missing(v2: Path) -> None:
    """pip would see it exist, fail to open it and serve the empty inline body."""
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    entry.body.unlink()
    entry.body.mkdir()
    _assert_corrupt(entry, Problem.MISSING_BODY)


def test_orphan_body(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None
    entry.meta.unlink()
    _assert_corrupt(entry, Problem.ORPHAN_BODY)


def test_metadata_deleted_after_walk(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None
    entry.meta.unlink()
    assert hc.check_entry(entry) == (None, Problem.ORPHAN_BODY)  # stale EntryFiles


@pytest.mark.parametrize("keep", [0, 1, len(WHEEL) // 2, len(WHEEL) - 1])
def test_truncated_body(v2: Path, keep: int) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    entry.body.write_bytes(WHEEL[:keep])
    response, problem = hc.check_entry(refresh(entry))
    assert problem is Problem.TRUNCATED_BODY
    assert response is not None and response.body_size == keep
    hc.read_entry(refresh(entry))  # readable, just not valid


def test_truncated_http_body(v1: Path) -> None:
    entry = old_store(v1, URL, WHEEL[:100], {"Content-Length": str(len(WHEEL))})
    assert hc.check_entry(entry)[1] is Problem.TRUNCATED_BODY


def test_oversized_body(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    entry.body.write_bytes(WHEEL + b"\0")
    assert _problem(entry) is Problem.OVERSIZED_BODY


def test_empty_body_without_content_length(v2: Path) -> None:
    entry = write_meta(v2, URL, b"cc=4," + msgpack.packb(_good_meta(headers={})), body=b"")
    assert _problem(entry) is Problem.TRUNCATED_BODY


def test_truncated_wheel_without_content_length(v2: Path) -> None:
    """Chunked responses carry no Content-Length; the missing central directory gives it away."""
    blob = b"cc=4," + msgpack.packb(_good_meta(headers=OCTET))
    entry = write_meta(v2, URL, blob, body=WHEEL[: len(WHEEL) - 40])
    response, problem = hc.check_entry(entry)
    assert problem is Problem.BAD_ARCHIVE
    assert response is not None and response.content_length is None


@pytest.mark.parametrize(
    "body",
    [
        b"PK\x03\x04" + b"\0" * 200,
        b"\x1f\x8b\x08\x00" + b"\xff" * 200,
        b"\x1f\x8b\x07",
    ],
    ids=["zip", "gzip", "gzip-method"],
)
def test_bad_archive(v2: Path, body: bytes) -> None:
    entry = pip_store_v2(v2, URL, body, OCTET)
    response, problem = hc.check_entry(entry)
    assert problem is Problem.BAD_ARCHIVE
    assert response is not None


def test_bad_content_encoding(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, JSON_PAGE, {**JSON_CT, "Content-Encoding": "gzip"})
    response, problem = hc.check_entry(entry)
    assert problem is Problem.BAD_ENCODING
    assert response is not None and response.kind is Kind.INDEX_PAGE


def _crash_mid_write(path: Path, data: bytes) -> None:
    """pip's adjacent_tmp_file interrupted before os.replace: the leftover it leaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(KeyboardInterrupt), adjacent_tmp_file(str(path)) as f:
        f.write(data)
        raise KeyboardInterrupt


def test_temp_leftovers_alone(v2: Path) -> None:
    meta = hc.entry_path(v2, URL)
    _crash_mid_write(meta, b"cc=4,")
    [entry] = hc.iter_entry_files(v2)
    assert entry.meta is None and entry.body is None
    assert len(entry.temps) == 1 and entry.temps[0].name.startswith(meta.name)
    assert entry.temps[0].name.endswith(".tmp")
    _assert_corrupt(entry, Problem.TEMP_FILE)


def test_temp_leftovers_next_to_good_entry(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    _crash_mid_write(entry.body, WHEEL[:10])
    entry = refresh(entry)
    assert len(entry.temps) == 1 and entry.temps[0].name.startswith(entry.body.name)
    response, problem = hc.check_entry(entry)
    assert problem is Problem.TEMP_FILE and response is not None
    assert sum(fs.remove_file(temp) for temp in entry.temps) == 10
    assert _problem(entry) is None


def test_zero_byte_files(v2: Path) -> None:
    entry = write_meta(v2, URL, b"", body=b"")
    _assert_corrupt(entry, Problem.UNREADABLE_METADATA)


def test_body_file_in_old_format_is_stray(v1: Path) -> None:
    entry = old_store(v1, URL, WHEEL, OCTET)
    assert entry.meta is not None
    Path(f"{entry.meta}.body").write_bytes(WHEEL)
    entry = refresh(entry)
    assert entry.body is None and len(entry.strays) == 1
    response, problem = hc.check_entry(entry)
    assert problem is Problem.STRAY_FILE and response is not None


def test_misplaced_and_unknown_files_are_strays(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None
    wrong = v2 / "f" / "f" / "f" / "f" / "f"
    wrong.mkdir(parents=True)
    shutil.copy(entry.meta, wrong / entry.meta.name)
    (v2 / "README").write_text("hi")
    (entry.meta.parent / "tmpabcdefgh").write_bytes(b"x")
    found = {e.key: e for e in hc.iter_entry_files(v2)}
    assert set(found) == {
        entry.key,
        f"f/f/f/f/f/{entry.key}",
        "README",
        entry.meta.parent.relative_to(v2).as_posix() + "/tmpabcdefgh",
    }
    for key, e in found.items():
        assert hc.check_entry(e)[1] is (None if key == entry.key else Problem.STRAY_FILE)


def test_symlinks_are_never_followed(tmp_path: Path, v2: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.whl"
    secret.write_bytes(WHEEL)
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.body is not None
    entry.body.unlink()
    entry.body.symlink_to(secret)
    hexlink = "a" if entry.key[0] != "a" else "b"  # a name the walk would descend into
    (v2 / hexlink).symlink_to(outside, target_is_directory=True)
    entries = list(hc.iter_entry_files(v2))
    [linked] = [e for e in entries if e.key == entry.key]
    assert linked.body is None and linked.strays == (entry.body,)
    assert hc.check_entry(linked) == (None, Problem.MISSING_BODY)
    assert [e.key for e in entries if e.key != entry.key] == [hexlink]
    for e in entries:
        hc.remove_entry(e)
    assert secret.read_bytes() == WHEEL and outside.is_dir()
    assert not (v2 / hexlink).is_symlink() and not entry.body.is_symlink()


# -- walking, identity, removal -------------------------------------------------------


def test_iter_groups_both_formats(v1: Path, v2: Path) -> None:
    for name, body, headers, _kind in CASES:
        pip_store_v2(v2, f"https://example.org/{name}", body, headers)
        old_store(v1, f"https://example.org/{name}", body, headers)
    for directory, fmt in ((v1, "http"), (v2, "http-v2")):
        rows = _scan(directory)
        assert len(rows) == len(CASES)
        assert all(r.entry.fmt == fmt and r.problem is None for r in rows)
        assert sorted(r.response.kind for r in rows if r.response) == sorted(c[3] for c in CASES)


def test_iter_needs_a_known_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        list(hc.iter_entry_files(tmp_path / "cache"))
    assert list(hc.iter_entry_files(tmp_path / "missing" / "http-v2")) == []
    assert list(hc.iter_entry_files(tmp_path / "cache", fmt="http-v2")) == []


def test_entry_files_for_matches_walk(v2: Path) -> None:
    pip_store_v2(v2, URL, WHEEL, OCTET)
    [walked] = hc.iter_entry_files(v2)
    assert hc.entry_files_for(hc.entry_path(v2, URL)) == walked
    absent = hc.entry_files_for(hc.entry_path(v2, URL + "x"))
    assert absent.meta is None and absent.paths == ()
    assert hc.check_entry(absent) == (None, Problem.UNREADABLE_METADATA)
    with pytest.raises(ValueError):
        hc.entry_files_for(v2 / "nonsense")


def test_fingerprint_tracks_rewrites(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    first = entry.fingerprint()
    assert len(first) == 6 and all(isinstance(x, int) for x in first)
    assert refresh(entry).fingerprint() == first
    pip_store_v2(v2, URL, WHEEL, OCTET)  # pip rewrites via temp file + os.replace
    assert refresh(entry).fingerprint() != first
    assert entry.body is not None
    entry.body.unlink()
    assert entry.fingerprint()[3:] == (-1, -1, -1)


def _sibling(entry: EntryFiles, last: str) -> EntryFiles:
    """A second entry in the same leaf directory (a key sharing the 5-char prefix)."""
    assert entry.meta is not None and entry.body is not None
    key = entry.key[:-1] + last
    meta = entry.meta.with_name(key)
    shutil.copy(entry.meta, meta)
    shutil.copy(entry.body, f"{meta}.body")
    return hc.entry_files_for(meta)


def test_remove_entry_deletes_only_the_entry(v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None
    _crash_mid_write(entry.meta, b"partial")
    entry = refresh(entry)
    other = _sibling(entry, "0" if entry.key[-1] != "0" else "1")
    stranger = entry.meta.parent / "not-an-entry"
    stranger.write_bytes(b"keep me")
    elsewhere = pip_store_v2(v2, URL + "?other", METADATA, OCTET)
    sizes = sum(p.stat().st_size for p in entry.paths)
    assert hc.remove_entry(entry) == sizes
    assert not any(p.exists() for p in entry.paths)
    assert all(p.exists() for p in other.paths + elsewhere.paths)
    assert stranger.read_bytes() == b"keep me"
    assert hc.check_entry(refresh(other))[1] is None
    assert hc.remove_entry(entry) == 0  # already gone: another pip got there first


def test_remove_entry_counts_shared_hard_links_as_nothing(tmp_path: Path, v2: Path) -> None:
    entry = pip_store_v2(v2, URL, WHEEL, OCTET)
    assert entry.meta is not None and entry.body is not None
    shared = tmp_path / "other-partition.body"
    os.link(entry.body, shared)
    meta_size = entry.meta.stat().st_size
    assert hc.remove_entry(entry) == meta_size
    assert not entry.body.exists() and shared.read_bytes() == WHEEL


# -- robustness -----------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=300),
)
_msgpack_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.binary(max_size=5)), inner, max_size=5),
    ),
    max_leaves=25,
)


def _check_never_crashes(directory: Path, meta: bytes, body: bytes | None) -> None:
    """Neither reader raises anything but ``CorruptEntry``, and both tell the same story."""
    entry = write_meta(directory, URL, meta, body)
    response, problem = hc.check_entry(entry)
    try:
        read: hc.CachedResponse | None = hc.read_entry(entry)
    except CorruptEntry as exc:
        read = None
        assert problem is exc.problem  # the problem check_entry reports is read_entry's
    assert read == response  # the same response, or none from either
    assert problem is not None or response is not None  # no response is always a problem


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meta=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: b"cc=4," + b),
        _msgpack_values.map(lambda v: b"cc=4," + msgpack.packb(v, use_bin_type=True)),
    ),
    body=st.one_of(
        st.none(),
        st.binary(max_size=400),
        st.sampled_from([WHEEL, TARGZ, ZIP_SDIST]).flatmap(
            lambda b: st.integers(0, len(b)).map(lambda n: b[:n])
        ),
    ),
    fmt=st.sampled_from(["http", "http-v2"]),
)
def test_arbitrary_bytes_never_crash(meta: bytes, body: bytes | None, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_never_crashes(Path(tmp, fmt), meta, body)


_RESPONSE_KEYS = {"body", "headers", "status", "version", "reason", "decode_content"}


_HEADER_NAMES = ["Content-Length", "Content-Encoding", "Content-Type", "ETag", "Vary"]
_HEADER_VALUES = ["gzip", "deflate", "br", "text/html", "12", "0", "Accept-Encoding"]
_valid_responses = st.fixed_dictionaries(
    {
        "body": st.just(b""),
        "headers": st.dictionaries(
            st.sampled_from(_HEADER_NAMES), st.sampled_from(_HEADER_VALUES), max_size=4
        ),
        "status": st.sampled_from([200, 203, 301, 404]),
        "version": st.just(11),
        "reason": st.just("OK"),
        "decode_content": st.booleans(),
    },
    optional={"strict": _leaf},
)
_odd_values = st.one_of(
    _leaf,
    _msgpack_values,
    st.dictionaries(st.sampled_from(_HEADER_NAMES), _leaf, min_size=1, max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(
    response=_valid_responses,
    change=st.one_of(
        st.none(), st.tuples(st.sampled_from(sorted(_RESPONSE_KEYS | {"other"})), _odd_values)
    ),
    dropped=st.one_of(st.none(), st.sampled_from(sorted(_RESPONSE_KEYS))),
    vary=st.one_of(
        st.dictionaries(st.sampled_from(["Accept-Encoding", "Accept"]), st.none() | st.text()),
        _odd_values,
    ),
    body=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_pip_never_chokes_on_what_we_accept(
    response: dict[str, Any],
    change: tuple[str, Any] | None,
    dropped: str | None,
    vary: Any,
    body: bytes | None,
) -> None:
    """Whenever pip's own deserializer raises, check_entry must have reported a problem."""
    if change is not None:
        response[change[0]] = change[1]
    response.pop(dropped or "", None)
    blob = b"cc=4," + msgpack.packb({"response": response, "vary": vary}, use_bin_type=True)
    with tempfile.TemporaryDirectory() as tmp:
        entry = write_meta(Path(tmp, "http-v2"), URL, blob, body)
        _resp, problem = hc.check_entry(entry)
        body_file = open(entry.body, "rb") if entry.body else None  # noqa: SIM115
        try:
            Serializer().loads(_request(URL), blob, body_file)
        except Exception:
            assert problem is Problem.UNREADABLE_METADATA
        finally:
            if body_file is not None:
                body_file.close()


# Big enough that the http/ metadata file is walked rather than loaded.
BIG_METADATA = METADATA + b"Description: " + b"x" * 70_000 + b"\n"


def _big_old_blob(value: Any, extra: Any) -> bytes:
    data = _good_meta(headers={"X": "y"})
    data["extra"] = extra
    data["response"]["body"] = BIG_METADATA
    return b"cc=4," + msgpack.packb({"zzz": value, **data}, use_bin_type=True)


@settings(max_examples=200, deadline=None)
@given(value=_msgpack_values, extra=_msgpack_values)
def test_structure_walk_agrees_with_msgpack(value: Any, extra: Any) -> None:
    """Unknown values around a big body are skipped exactly, whatever their msgpack types."""
    with tempfile.TemporaryDirectory() as tmp:
        entry = write_meta(Path(tmp, "http"), URL, _big_old_blob(value, extra))
        response, problem = hc.check_entry(entry)
        assert problem is None and response is not None
        assert response.kind is Kind.METADATA and response.body_size == len(BIG_METADATA)


@settings(max_examples=300, deadline=None)
@given(
    value=_msgpack_values,
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(0, 255))),
    cut=st.one_of(st.none(), st.integers(1, 400)),
)
def test_damaged_big_metadata_never_crashes(
    value: Any, flip: tuple[int, int] | None, cut: int | None
) -> None:
    blob = _big_old_blob(value, None)
    if flip is not None:
        pos = flip[0] % len(blob)
        blob = blob[:pos] + bytes([flip[1]]) + blob[pos + 1 :]
    if cut is not None:
        blob = blob[:-cut] if cut % 2 else blob[: len(blob) - len(BIG_METADATA) - cut]
    with tempfile.TemporaryDirectory() as tmp:
        _check_never_crashes(Path(tmp, "http"), blob, None)
        if cut is not None and flip is None:
            assert hc.check_entry(hc.entry_files_for(hc.entry_path(Path(tmp, "http"), URL)))[1]


# -- real pip against a loopback index ------------------------------------------------


def _pip_download(
    index: PackageIndex, version: str, cache: Path, dest: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run pip ``version`` straight out of its wheel, caching into ``cache``."""
    return subprocess.run(
        [
            str(python_for(version)),
            str(pip_wheel(version) / "pip"),
            "download",
            "--no-deps",
            "--dest",
            str(dest),
            "--cache-dir",
            str(cache),
            "--index-url",
            index.index_url,
            "--trusted-host",  # pip only caches plain-http hosts it trusts
            "127.0.0.1",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("version", ["23.0.1", "23.3.2", "26.3"])
def test_real_pip_entries_are_healthy(
    index: PackageIndex, dist_dir: Path, tmp_path: Path, version: str
) -> None:
    index.publish(build_wheel(dist_dir, "alpha", "1.0"), build_sdist(dist_dir, "beta", "2.0"))
    cache = tmp_path / "pip-cache"
    for spec in ("alpha", "beta"):
        proc = _pip_download(index, version, cache, tmp_path / "dl", spec)
        assert proc.returncode == 0, proc.stderr
    fmt = "http" if version == "23.0.1" else "http-v2"
    assert not (cache / ("http-v2" if fmt == "http" else "http")).exists()
    rows = _scan(cache / fmt)
    assert [r.problem for r in rows] == [None] * len(rows)
    kinds = {r.response.kind for r in rows if r.response}
    assert {Kind.INDEX_PAGE, Kind.WHEEL, Kind.SDIST} <= kinds
    pages = [r.response for r in rows if r.response and r.response.kind is Kind.INDEX_PAGE]
    assert all(p.content_encoding == "gzip" for p in pages)  # stored still compressed


@pytest.mark.slow
def test_truncated_body_breaks_pip_until_removed(
    index: PackageIndex, dist_dir: Path, tmp_path: Path
) -> None:
    """pip 23.3-24.x serve a short cached body as is: the hash check fails the install."""
    index.publish(build_wheel(dist_dir, "alpha", "1.0"))
    cache = tmp_path / "pip-cache"
    assert _pip_download(index, "24.3.1", cache, tmp_path / "dl1", "alpha").returncode == 0
    [wheel] = [r for r in _scan(cache / "http-v2") if r.response and r.response.kind is Kind.WHEEL]
    assert wheel.entry.body is not None
    wheel.entry.body.write_bytes(wheel.entry.body.read_bytes()[:300])
    assert hc.check_entry(wheel.entry)[1] is Problem.TRUNCATED_BODY
    failed = _pip_download(index, "24.3.1", cache, tmp_path / "dl2", "alpha")
    assert failed.returncode != 0 and "sha256" in failed.stderr.lower()
    hc.remove_entry(wheel.entry)
    assert _pip_download(index, "24.3.1", cache, tmp_path / "dl3", "alpha").returncode == 0
