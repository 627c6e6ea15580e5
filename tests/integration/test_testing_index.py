"""The loopback index must look like PyPI to pip, or the cache tests prove nothing."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

from conftest import FLIT_CORE_VERSION, MakeVenv
from pipfresh.testing.dists import build_sdist, build_wheel
from pipfresh.testing.index import JSON_V1, PackageIndex, negotiate

ISOLATED_PIP_VARS = {"PIP_CONFIG_FILE", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_INPUT"}
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """GET without urllib's redirect following or error raising."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(
            "GET", parts.path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def tiny(index: PackageIndex, dist_dir: Path) -> Path:
    wheel = build_wheel(dist_dir, "Tiny_Pkg", "1.0", requires=["six>=1"], requires_python=">=3.8")
    index.publish(wheel)
    index.reset_counters()
    return wheel


# -- content negotiation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (PIP_ACCEPT, JSON_V1),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("text/html, application/vnd.pypi.simple.v1+json;q=0.5", "text/html"),
        ("application/vnd.pypi.simple.v1+json;q=0.2, */*;q=0.9", "text/html"),
        ("application/*", "application/vnd.pypi.simple.v1+html"),
        ("text/html;q=0, application/vnd.pypi.simple.v1+json;q=0", None),
        ("application/json", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_html_and_json_pages_describe_the_same_files(index: PackageIndex, tiny: Path) -> None:
    sha = hashlib.sha256(tiny.read_bytes()).hexdigest()
    status, headers, body = fetch(index.index_url + "tiny-pkg/", Accept="text/html")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    page = body.decode()
    link = f'href="../../files/{tiny.name}#sha256={sha}"'
    assert link in page
    assert 'data-requires-python="&gt;=3.8"' in page

    status, headers, body = fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)
    assert status == 200
    assert headers["content-type"] == JSON_V1
    doc = json.loads(body)
    assert doc["name"] == "tiny-pkg"
    assert doc["meta"]["api-version"].startswith("1.")
    assert doc["versions"] == ["1.0"]
    (entry,) = doc["files"]
    assert entry["filename"] == tiny.name
    assert entry["hashes"] == {"sha256": sha}
    assert entry["requires-python"] == ">=3.8"
    assert entry["size"] == tiny.stat().st_size
    assert "dist-info-metadata" not in entry  # PEP 714: that key crashes pip 23.0

    root = json.loads(fetch(index.index_url, Accept=JSON_V1)[2])
    assert {p["name"] for p in root["projects"]} == {"flit-core", "tiny-pkg"}
    assert fetch(index.index_url, Accept="application/json")[0] == 406


def test_non_canonical_names_redirect(index: PackageIndex, tiny: Path) -> None:
    for path in ("Tiny_Pkg/", "tiny.pkg", "tiny-pkg"):
        status, headers, _ = fetch(index.index_url + path)
        assert (status, headers["location"]) == (301, "/simple/tiny-pkg/")
    assert fetch(index.index_url + "nope/")[0] == 404
    with urllib.request.urlopen(index.index_url + "TINY.PKG", timeout=10) as resp:
        assert resp.url == index.index_url + "tiny-pkg/"


# -- caching headers ------------------------------------------------------------------


def test_etag_and_304(index: PackageIndex, tiny: Path) -> None:
    headers = fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)[1]
    assert headers["cache-control"] == "max-age=600, public"
    assert headers["vary"] == "Accept, Accept-Encoding"
    etag = headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag)

    status, headers304, body304 = fetch(
        index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT, If_None_Match=etag
    )
    assert (status, body304) == (304, b"")
    assert headers304["etag"] == etag
    assert headers304["cache-control"] == "max-age=600, public"
    # A different representation has a different ETag, so it does not match.
    assert fetch(index.index_url + "tiny-pkg/", If_None_Match=etag)[0] == 200
    assert (
        fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT, If_None_Match=f"W/{etag}")[0] == 304
    )

    status, headers, _ = fetch(index.file_url(tiny.name))
    assert headers["cache-control"] == "max-age=365000000, immutable, public"
    assert headers["content-type"] == "application/octet-stream"
    assert int(headers["content-length"]) == tiny.stat().st_size


def test_publishing_changes_the_etag(index: PackageIndex, tiny: Path, dist_dir: Path) -> None:
    url = index.index_url + "tiny-pkg/"
    etag = fetch(url, Accept=PIP_ACCEPT)[1]["etag"]
    assert fetch(url, Accept=PIP_ACCEPT)[1]["etag"] == etag  # stable while nothing changes
    index.publish(build_wheel(dist_dir, "tiny-pkg", "1.1"))
    status, headers, body = fetch(url, Accept=PIP_ACCEPT, If_None_Match=etag)
    assert status == 200
    assert headers["etag"] != etag
    assert json.loads(body)["versions"] == ["1.0", "1.1"]
    index.unpublish(tiny.name)
    assert json.loads(fetch(url, Accept=PIP_ACCEPT)[2])["versions"] == ["1.1"]


def test_pages_are_gzipped_when_accepted(index: PackageIndex, tiny: Path) -> None:
    url = index.index_url + "tiny-pkg/"
    _, plain_headers, plain = fetch(url, Accept=PIP_ACCEPT)
    assert "content-encoding" not in plain_headers
    _, headers, body = fetch(url, Accept=PIP_ACCEPT, Accept_Encoding="gzip, deflate")
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body)
    assert gzip.decompress(body) == plain
    assert headers["etag"] == plain_headers["etag"]


def test_metadata_file_matches_its_hash(index: PackageIndex, tiny: Path) -> None:
    page = fetch(index.index_url + "tiny-pkg/", Accept="text/html")[2].decode()
    core = re.search(r'data-core-metadata="sha256=([0-9a-f]+)"', page)
    legacy = re.search(r'data-dist-info-metadata="sha256=([0-9a-f]+)"', page)
    assert core is not None and legacy is not None
    assert core.group(1) == legacy.group(1)
    status, headers, body = fetch(index.file_url(tiny.name) + ".metadata")
    assert status == 200
    assert headers["cache-control"] == "max-age=365000000, immutable, public"
    assert hashlib.sha256(body).hexdigest() == core.group(1)
    with zipfile.ZipFile(tiny) as zf:
        assert body == zf.read("tiny_pkg-1.0.dist-info/METADATA")
    entry = json.loads(fetch(index.index_url + "tiny-pkg/", Accept=JSON_V1)[2])["files"][0]
    assert entry["core-metadata"] == {"sha256": core.group(1)}


def test_a_statically_served_project_lists_bare_links(
    index: PackageIndex, tiny: Path, dist_dir: Path
) -> None:
    """Like a static directory listing: nothing on the page pins a file's content, and a
    file replaced under its name is served new to a client that revalidates."""
    index.serve_statically("Tiny_Pkg")
    page = fetch(index.index_url + "tiny-pkg/", Accept="text/html")[2].decode()
    assert f'href="../../files/{tiny.name}"' in page
    assert "sha256" not in page and "metadata" not in page
    (entry,) = json.loads(fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)[2])["files"]
    assert entry["hashes"] == {}
    assert not {"size", "upload-time", "core-metadata", "data-dist-info-metadata"} & set(entry)
    assert fetch(index.file_url(tiny.name) + ".metadata")[0] == 404
    status, headers, _ = fetch(index.file_url(tiny.name))
    assert status == 200 and "cache-control" not in headers
    etag = headers["etag"]
    assert fetch(index.file_url(tiny.name), If_None_Match=etag)[0] == 304

    page_etag = fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)[1]["etag"]
    other = build_wheel(
        dist_dir / "new", "Tiny_Pkg", "1.0", requires_python=">=3.8", modules={"tiny_pkg/x.py": ""}
    )
    index.publish(other)  # same name, new content: the page cannot tell
    assert fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)[1]["etag"] == page_etag
    status, _, body = fetch(index.file_url(tiny.name), If_None_Match=etag)
    assert (status, body) == (200, other.read_bytes())
    # Other projects keep PyPI's listing.
    flit = fetch(index.index_url + "flit-core/", Accept="text/html")[2].decode()
    assert "#sha256=" in flit


def test_an_uncached_project_sends_no_caching_headers(index: PackageIndex, tiny: Path) -> None:
    """Like many private indexes and mirrors: hashes on the page, but no header pip's HTTP
    cache could keep a response by, and (unless asked) no PEP 658 metadata."""
    caching = {"cache-control", "etag", "last-modified", "expires"}
    sha = hashlib.sha256(tiny.read_bytes()).hexdigest()
    index.serve_uncached("Tiny_Pkg")
    status, headers, page = fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)
    assert status == 200 and not caching & set(headers), headers
    (entry,) = json.loads(page)["files"]
    assert entry["hashes"] == {"sha256": sha}
    assert not {"core-metadata", "data-dist-info-metadata"} & set(entry)
    html_page = fetch(index.index_url + "tiny-pkg/", Accept="text/html")[2].decode()
    assert f"#sha256={sha}" in html_page and "metadata" not in html_page
    assert fetch(index.file_url(tiny.name) + ".metadata")[0] == 404
    status, headers, body = fetch(index.file_url(tiny.name), Range="bytes=0-9")
    assert (status, body) == (200, tiny.read_bytes())  # the whole file: no ranges either
    assert not caching & set(headers), headers

    index.serve_uncached("Tiny_Pkg", metadata=True)
    (entry,) = json.loads(fetch(index.index_url + "tiny-pkg/", Accept=PIP_ACCEPT)[2])["files"]
    assert "core-metadata" in entry
    status, headers, _ = fetch(index.file_url(tiny.name) + ".metadata")
    assert status == 200 and not caching & set(headers), headers
    # Other projects keep PyPI's headers.
    assert "etag" in fetch(index.index_url + "flit-core/", Accept=PIP_ACCEPT)[1]


def test_range_requests(index: PackageIndex, tiny: Path) -> None:
    data = tiny.read_bytes()
    status, headers, body = fetch(index.file_url(tiny.name), Range="bytes=10-19")
    assert (status, body) == (206, data[10:20])
    assert headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert fetch(index.file_url(tiny.name), Range="bytes=-5")[2] == data[-5:]
    assert fetch(index.file_url(tiny.name), Range=f"bytes={len(data)}-")[0] == 416


# -- counters --------------------------------------------------------------------------


def test_counters_count_kinds_and_bytes(index: PackageIndex, tiny: Path) -> None:
    url = index.index_url + "tiny-pkg/"
    _, headers, page = fetch(url, Accept=PIP_ACCEPT)
    fetch(url, Accept=PIP_ACCEPT, If_None_Match=headers["etag"])
    _, _, meta = fetch(index.file_url(tiny.name) + ".metadata")
    fetch(index.file_url(tiny.name))
    fetch(index.file_url(tiny.name))
    fetch(index.base_url + "nowhere")

    c = index.counters()
    assert (c.index_200, c.index_304, c.index_requests) == (1, 1, 2)
    assert c.index_bytes == len(page)
    assert (c.metadata_requests, c.metadata_bytes) == (1, len(meta))
    assert (c.file_requests, c.file_bytes) == (2, 2 * tiny.stat().st_size)
    assert c.downloads == {tiny.name: 2}
    assert c.other_requests == 1
    assert c.total_requests == 6
    # A record is appended once its response is sent, so records of requests made
    # one after another may still land in another order: compare them as a set.
    assert ("GET", "/nowhere", 404) in [r[:3] for r in c.records]
    pages = sorted((r.kind, r.bytes_sent) for r in c.records if r.kind.startswith("index"))
    assert pages == [("index_200", len(page)), ("index_304", 0)]

    index.reset_counters()
    assert index.counters().total_requests == 0
    assert c.total_requests == 6  # snapshots are independent of later resets


def test_latency_and_bandwidth(index: PackageIndex, dist_dir: Path) -> None:
    blob = build_wheel(
        dist_dir, "blob", "1.0", extra_files={"blob/data.bin": bytes(range(256)) * 200}
    )
    index.publish(blob)
    size = blob.stat().st_size
    index.latency, index.bandwidth = 0.2, size / 0.3
    start = time.monotonic()
    assert fetch(index.file_url(blob.name))[2] == blob.read_bytes()
    assert time.monotonic() - start >= 0.45


def test_hold_keeps_clients_mid_request_until_release(index: PackageIndex, dist_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    wheel = build_wheel(dist_dir, "held", "1.0")
    index.publish(wheel)
    index.hold()
    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(fetch, index.file_url(wheel.name)) for _ in range(2)]
        assert index.wait_held(2)
        assert not any(a.done() for a in answers)  # held: no response while the gate is shut
        assert index.counters().total_requests == 0  # and not counted yet
        index.release()
        assert [a.result()[0] for a in answers] == [200, 200]
    assert index.counters().file_requests == 2
    assert index.wait_held(1, timeout=0) is False  # released: nothing waits any more


def test_cli_serves_a_directory(tmp_path: Path, dist_dir: Path) -> None:
    build_wheel(dist_dir, "clipkg", "0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipfresh.testing.index", str(dist_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/simple/", url)
        assert b"clipkg-0.1-py3-none-any.whl" in fetch(url + "clipkg/")[2]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "served 1 requests" in err


def test_refuses_non_loopback_hosts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        PackageIndex(tmp_path, host="0.0.0.0")


# -- distributions ----------------------------------------------------------------------


def test_built_distributions_are_reproducible_and_valid(tmp_path: Path) -> None:
    scripts = {"console_scripts": {"x": "x:main"}}
    one, two = (
        build_wheel(tmp_path / d, "x", "2.0", requires=["a>1"], entry_points=scripts) for d in "12"
    )
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as zf:
        assert zf.read("x/__init__.py").decode().endswith('__version__ = "2.0"\n')
        assert b"Requires-Dist: a>1" in zf.read("x-2.0.dist-info/METADATA")
        assert zf.read("x-2.0.dist-info/entry_points.txt").decode().startswith("[console_scripts]")
        assert zf.namelist()[-1] == "x-2.0.dist-info/RECORD"
    sdists = [build_sdist(tmp_path / d, "x", "2.0") for d in "12"]
    assert sdists[0].read_bytes() == sdists[1].read_bytes()
    with tarfile.open(sdists[0]) as tf:
        assert {"x-2.0/PKG-INFO", "x-2.0/pyproject.toml", "x-2.0/x/__init__.py"} <= set(
            tf.getnames()
        )


# -- real pip ----------------------------------------------------------------------------


@pytest.mark.parametrize("pip", ["23.0.1", "25.3", "26.3"])
def test_real_pip_downloads_and_caches(
    pip: str, index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    index.publish(build_wheel(dist_dir, "tiny", "1.0"))
    venv = make_venv(pip=pip)
    cache = tmp_path / "pip-cache"

    def download(dest: str) -> None:
        venv.pip(
            "download", "--no-deps", "-d", tmp_path / dest, "--index-url", index.index_url,
            "--trusted-host", index.host, "--cache-dir", cache, "tiny==1.0",
        )  # fmt: skip

    index.reset_counters()
    download("first")
    assert (tmp_path / "first" / "tiny-1.0-py3-none-any.whl").is_file()
    c = index.counters()
    assert c.index_200 == 1
    # PEP 658 metadata first, then the wheel; pip 23.0 only knows the JSON key
    # that PEP 714 retired, so it goes straight for the wheel.
    assert c.metadata_requests == (0 if pip == "23.0.1" else 1)
    assert c.downloads == {"tiny-1.0-py3-none-any.whl": 1}

    index.reset_counters()
    download("second")
    assert (tmp_path / "second" / "tiny-1.0-py3-none-any.whl").is_file()
    c = index.counters()
    assert (c.file_bytes, c.metadata_requests, c.index_200) == (0, 0, 0)
    if pip == "26.3":
        # pip 26.3 trusts a cached page for its max-age: no request at all
        # (unless --refresh-package).  Older pips always revalidate: one 304.
        assert c.total_requests == 0
    else:
        assert c.index_304 == c.index_requests == c.total_requests == 1


def test_real_pip_builds_an_sdist_offline(
    index: PackageIndex, dist_dir: Path, make_venv: MakeVenv, tmp_path: Path
) -> None:
    index.publish(build_sdist(dist_dir, "Tiny.Sd", "3.1"))
    venv = make_venv(pip="26.3")
    venv.pip(
        "install", "--index-url", index.index_url, "--trusted-host", index.host,
        "--cache-dir", tmp_path / "pip-cache", "tiny-sd",
    )  # fmt: skip
    assert venv.run("-c", "import tiny_sd; print(tiny_sd.__version__)").stdout.strip() == "3.1"
    c = index.counters()
    assert c.downloads == {
        "tiny_sd-3.1.tar.gz": 1,
        f"flit_core-{FLIT_CORE_VERSION}-py3-none-any.whl": 1,
    }


def test_pip_configuration_of_this_machine_does_not_leak(tmp_path: Path) -> None:
    assert not [k for k in os.environ if k.startswith("PIP_") and k not in ISOLATED_PIP_VARS]
    assert os.environ["PIPFRESH_CACHE_DIR"] == str(tmp_path / "pipfresh-cache")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    )
    assert "find-links" not in out.stdout
    assert "index-url" not in out.stdout
    assert "cert" not in out.stdout
