"""What a page offers within the root pins (``resolve.candidates``): pure functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipfresh.resolve import candidates
from pipfresh.resolve.pagelog import Page
from pipfresh.resolve.reuse import Offer
from pipfresh.resolve.revalidate import Change

URL = "https://h/simple/lib/"


def _json(*files: dict[str, object], meta: dict[str, object] | None = None) -> bytes:
    doc = {"meta": meta or {"api-version": "1.1"}, "name": "lib", "files": list(files)}
    return json.dumps(doc).encode()


def _file(name: str, sha: str = "a" * 64, **extra: object) -> dict[str, object]:
    return {"filename": name, "url": f"../../files/{name}", "hashes": {"sha256": sha}, **extra}


def _pinned(body: bytes, pin: str, ctype: str = candidates.JSON_V1) -> list[str]:
    listing = candidates.parse(body, ctype, URL)
    assert listing is not None
    return candidates.pinned_set(listing, "lib", pin)


def test_a_new_version_outside_the_pin_changes_nothing() -> None:
    before = _json(_file("lib-1.0-py3-none-any.whl"))
    after = _json(_file("lib-1.0-py3-none-any.whl"), _file("lib-1.1-py3-none-any.whl", "b" * 64))
    assert _pinned(before, "==1.0") == _pinned(after, "==1.0")
    assert _pinned(before, "==1.1") != _pinned(after, "==1.1")


@pytest.mark.parametrize(
    "added",
    [
        "lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",  # a new wheel of the pinned version
        "lib-1.0.tar.gz",
        "lib-1.0.0-py3-none-any.whl",  # zero padding: ==1.0 admits 1.0.0
        "lib-1.0+local-py3-none-any.whl",  # a pin without a local label admits one
        "lib-1.0.tar.bz2",  # a format packaging does not read: pip's reading admits it
        "lib-1.0-2.tar.gz",  # pip reads 1.0-2 (1.0.post2): only ==1.0.post2 admits it
        "whatever.egg",  # no version can be read: admitted
    ],
)
def test_a_file_the_pin_may_admit_changes_the_set(added: str) -> None:
    before = _json(_file("lib-1.0-py3-none-any.whl"))
    after = _json(_file("lib-1.0-py3-none-any.whl"), _file(added, "b" * 64))
    pin = "==1.0.post2" if added == "lib-1.0-2.tar.gz" else "==1.0"
    assert _pinned(before, pin) != _pinned(after, pin), added


@pytest.mark.parametrize(
    "change",
    [
        {"yanked": True},
        {"yanked": "broken"},
        {"requires-python": ">=3.12"},
        {"core-metadata": {"sha256": "c" * 64}},
        {"hashes": {"sha256": "d" * 64}},
    ],
)
def test_any_attribute_of_a_pinned_file_changes_the_set(change: dict[str, object]) -> None:
    before = _json(_file("lib-1.0-py3-none-any.whl"))
    after = _json({**_file("lib-1.0-py3-none-any.whl"), **change})
    assert _pinned(before, "==1.0") != _pinned(after, "==1.0")


def test_private_meta_keys_do_not_count_but_other_meta_does() -> None:
    files = _file("lib-1.0-py3-none-any.whl")
    base = _pinned(_json(files, meta={"api-version": "1.1", "_last-serial": 1}), "==1.0")
    same = _pinned(_json(files, meta={"api-version": "1.1", "_last-serial": 2}), "==1.0")
    status = {"api-version": "1.4", "project-status": {"status": "quarantined"}}
    assert base == same != _pinned(_json(files, meta=status), "==1.0")


def test_html_pages_are_read_as_pip_reads_them() -> None:
    page = (
        '<html><head><meta name="pypi:repository-version" content="1.1"></head><body>'
        '<a href="../../files/lib-1.0-py3-none-any.whl#sha256={}" data-yanked="">x</a>'
        '<a href="../../files/lib-2.0-py3-none-any.whl#sha256={}">y</a></body></html>'
    )
    listing = candidates.parse(page.format("a" * 64, "b" * 64).encode(), "text/html", URL)
    assert listing is not None
    [name1, name2] = [name for name, _ in listing.files]
    assert (name1, name2) == ("lib-1.0-py3-none-any.whl", "lib-2.0-py3-none-any.whl")
    pinned = candidates.pinned_set(listing, "lib", "==1.0")
    assert len(pinned) == 2 and "https://h/files/lib-1.0-py3-none-any.whl#sha256=" in pinned[1]
    assert '"data-yanked": ""' in pinned[1]
    assert candidates.versions(listing, "lib") == ["1.0", "2.0"]


def test_a_page_pip_would_not_read_is_not_read() -> None:
    assert candidates.parse(b"{}", "application/json", URL) is None
    assert candidates.parse(b"not json", candidates.JSON_V1, URL) is None
    assert candidates.parse(b'{"files": 3}', candidates.JSON_V1, URL) is None


def test_root_pins_from_the_command_line_and_files(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("lib==1.0\nother>=1\nmarked==2; python_version<'3'\n")
    (tmp_path / "r.txt").write_text("-c c.txt\nexact===1.0a1 --hash=sha256:abc\nwild==1.*\n")
    args = ["install", "-i", "https://h/simple/", "-r", str(tmp_path / "r.txt"), "app==3"]
    args += ["--index-url", "x==1", "url @ https://h/u.whl", "two==1,>=0.5", "two==1.0"]
    pins = candidates.root_pins(args, {})
    assert pins == {"lib": "==1.0", "exact": "===1.0a1", "app": "==3", "two": "==1,==1.0"}
    settings = {"constraint": str(tmp_path / "c.txt")}
    assert candidates.root_pins(["install", "app"], settings) == {"lib": "==1.0"}


def test_an_offer_judges_a_change() -> None:
    page = Page(URL, etag='"1"')
    old = _json(_file("lib-1.0-py3-none-any.whl"))
    pinned = Offer.of(URL, old, candidates.JSON_V1, {"lib": "==1.0"})
    free = Offer.of(URL, old, candidates.JSON_V1, {})
    released = _json(_file("lib-1.0-py3-none-any.whl"), _file("lib-1.1-py3-none-any.whl", "b" * 64))
    change = Change(page, "changed", released, candidates.JSON_V1)
    assert pinned.change(change) is None
    assert free.change(change) == "lib has a new candidate 1.1"
    wheel = _json(_file("lib-1.0-py3-none-any.whl"), _file("lib-1.0-py2-none-any.whl", "c" * 64))
    said = pinned.change(Change(page, "changed", wheel, candidates.JSON_V1))
    assert said == "lib has a new candidate lib-1.0-py2-none-any.whl"
    yanked = _json(_file("lib-1.0-py3-none-any.whl", yanked=True))
    said = pinned.change(Change(page, "changed", yanked, candidates.JSON_V1))
    assert said == "lib has a changed candidate lib-1.0-py3-none-any.whl"
    assert (
        pinned.change(Change(page, "changed", b"<", "text/plain"))
        == "lib's page cannot be compared"
    )


def test_the_newest_version_in_pep_440_order() -> None:
    assert candidates.newest(["1.9", "1.10", "1.10rc1", "junk"]) == "1.10"
    assert candidates.newest([]) is None
