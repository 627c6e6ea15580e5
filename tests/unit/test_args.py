"""pipfresh takes only its own options out of a pip command line."""

from __future__ import annotations

import pytest

from pipfresh.errors import PipfreshError
from pipfresh.pip.args import split


def test_own_options_are_removed_and_the_rest_kept_in_order() -> None:
    parsed = split(
        ["--python", "/v/bin/python", "-r", "req.txt", "--summary-json=s.json", "--pre", "x"]
    )
    assert parsed.python == "/v/bin/python"
    assert parsed.summary_json == "s.json"
    assert parsed.args == ["-r", "req.txt", "--pre", "x"]


def test_cache_choices_and_report_are_seen_but_passed_on() -> None:
    parsed = split(["--cache-dir", "/c", "x"])
    assert parsed.cache_dir == "/c" and parsed.user_cache_choice == "--cache-dir"
    assert parsed.args == ["--cache-dir", "/c", "x"]
    assert split(["--no-cache-dir", "x"]).user_cache_choice == "--no-cache-dir"
    assert split(["--report=r.json"]).report == "r.json"
    assert split(["x"]).user_cache_choice is None


def test_quiet_is_counted() -> None:
    assert split(["-q", "-qq", "--quiet"]).quiet == 4
    assert split(["-r", "q"]).quiet == 0


def test_own_option_without_value_is_an_error() -> None:
    with pytest.raises(PipfreshError, match="--python needs a value"):
        split(["--python"])
