"""Which pages are asked ahead: pip's index URLs, as pip orders and spells them."""

from __future__ import annotations

from pathlib import Path

from pipfresh.resolve.prefetch import root_pages


def _urls(args: list[str], settings: dict[str, str], tmp_path: Path) -> list[str]:
    return [p.url for p in root_pages(["install", *args], settings, tmp_path / "http-v2")]


def test_pages_on_every_index_pip_reads(tmp_path: Path) -> None:
    reqs = tmp_path / "r.txt"
    reqs.write_text(
        "--extra-index-url https://extra.example/simple\nSome_Project[x]>=1 ; python_version > '3'\n./local\n"
    )
    urls = _urls(["-i", "https://main.example/simple/", "-r", str(reqs), "Other==1"], {}, tmp_path)
    assert urls == [
        "https://main.example/simple/other/",
        "https://main.example/simple/some-project/",
        "https://extra.example/simple/other/",
        "https://extra.example/simple/some-project/",
    ]


def test_pypi_by_default_and_the_configured_index_else(tmp_path: Path) -> None:
    assert _urls(["demo"], {}, tmp_path) == ["https://pypi.org/simple/demo/"]
    settings = {"index-url": "https://conf.example/s", "extra-index-url": "https://x.example/s"}
    assert _urls(["demo"], settings, tmp_path) == [
        "https://conf.example/s/demo/",
        "https://x.example/s/demo/",
    ]


def test_nothing_ahead_without_an_index_or_with_credentials(tmp_path: Path) -> None:
    assert _urls(["--no-index", "demo"], {}, tmp_path) == []
    assert _urls(["demo"], {"no-index": "yes"}, tmp_path) == []
    assert _urls(["-i", "https://user:secret@private.example/simple", "demo"], {}, tmp_path) == []
