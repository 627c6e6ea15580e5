"""What is asked ahead: pip's index URLs, as pip orders and spells them; the wheels pip
would take."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from packaging import tags
from packaging.specifiers import SpecifierSet

from pipfresh.pip import httpcache
from pipfresh.resolve import prefetch
from pipfresh.resolve.prefetch import root_pages
from pipfresh.resolve.reuse import Offer
from pipfresh.target.interpreter import probe


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


def _offer(project: str, *files: tuple[str, dict[str, object]]) -> Offer:
    base = "https://files.example/"
    entries = [json.dumps([base + name, attributes], sort_keys=True) for name, attributes in files]
    return Offer(project, "==1.0", ["{}", *entries])


def _with(sha: str, **more: object) -> dict[str, object]:
    return {"core-metadata": True, "hashes": {"sha256": sha}, **more}


def test_the_wheel_pip_would_take_for_each_pin(tmp_path: Path) -> None:
    """Of one version's wheels, the tags the target ranks first, then the highest build;
    none for a page offering only what pip would skip or read without metadata."""
    facts = probe(Path(sys.executable), None)
    version = f"{sys.version_info[0]}{sys.version_info[1]}"
    platform = next(iter(tags.platform_tags()))
    native = f"cp{version}-cp{version}-{platform}"
    offers = {
        "a": _offer(
            "a",
            ("a-1.0-py3-none-any.whl", _with("1")),
            (f"a-1.0-{native}.whl", _with("2")),  # most specific: pip's choice
            (f"a-1.0-cp{version}-abi3-{platform}.whl", _with("3")),
            ("a-1.0.tar.gz", _with("4")),
        ),
        "b": _offer(
            "b", ("b-1.0-py3-none-any.whl", _with("5")), ("b-1.0-1-py3-none-any.whl", _with("6"))
        ),
        "c": _offer(
            "c",
            ("c-1.0-py3-none-any.whl", _with("7", yanked="broken")),
            ("c-1.0-py2-none-any.whl", _with("8")),  # not for this interpreter
        ),
        "d": _offer("d", ("d-1.0-py3-none-any.whl", {"hashes": {"sha256": "9"}})),  # no metadata
        "e": _offer("e", ("e-1.0-py3-none-any.whl", _with("10", **{"requires-python": "<3"}))),
        "f": _offer("f", ("f-1.0-py3-none-any.whl#sha256=ab", {"data-core-metadata": "true"})),
    }
    urls = list(prefetch.wheel_urls(offers, facts, tmp_path, stored=lambda sha: False))
    names = [u.rsplit("/", 1)[-1] for u in urls]
    assert names == [f"a-1.0-{native}.whl", "b-1.0-1-py3-none-any.whl", "f-1.0-py3-none-any.whl"]
    # What the store holds (by sha256, HTML fragments too) is not fetched again.
    held = {"2", "ab"}
    urls = prefetch.wheel_urls(offers, facts, tmp_path, stored=held.__contains__)
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["b-1.0-1-py3-none-any.whl"]


def test_requires_dist_for_the_target_and_the_newest_version_it_admits(tmp_path: Path) -> None:
    """The taken wheel's metadata names what to fetch next: markers evaluated for the
    target, extras not taken; each named project's guess is its newest admitted release."""
    facts = probe(Path(sys.executable), None)
    http_dir = tmp_path / "http-v2"
    offers = {"a": _offer("a", ("a-1.0-py3-none-any.whl", _with("1")))}
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: a",
            "Version: 1.0",
            "Requires-Dist: B>=1,<3",
            "Requires-Dist: b!=2.1",
            "Requires-Dist: c; python_version < '3'",
            "Requires-Dist: d; extra == 'x'",
            f"Requires-Dist: e; sys_platform == '{sys.platform}'",
            "",
            "A description.",
        ]
    )
    url = "https://files.example/a-1.0-py3-none-any.whl.metadata"
    httpcache.write_response(http_dir, url, {"Cache-Control": "max-age=60"}, metadata.encode())
    wanted = prefetch.requirements_of(offers, facts, http_dir)
    assert {name: str(spec) for name, spec in wanted.items()} == {
        "b": str(SpecifierSet("!=2.1,<3,>=1")),
        "e": "",
    }
    listed = {
        "b": Offer("b", versions=["1.0", "2.0", "2.1", "2.2rc1", "3.0"]),
        "e": Offer("e", versions=["0.1", "0.2.dev1"]),
        "z": Offer("z", versions=["9"]),  # not wanted
    }
    assert prefetch.guessed_pins(listed, wanted) == {"b": "==2.0", "e": "==0.1"}
