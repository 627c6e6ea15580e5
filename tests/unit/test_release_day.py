"""The release-day scenarios' pure helpers: the next version, a lock's pins."""

from __future__ import annotations

from pathlib import Path

from benchmarks.release_day import next_version, pins


def test_next_version_bumps_the_last_release_component() -> None:
    assert next_version("1.44.5") == "1.44.6"
    assert next_version("2.0") == "2.1"
    assert next_version("2.9.0.post0") == "2.9.1"
    assert next_version("3.0rc1") == "3.1"


def test_pins_reads_name_equals_version_lines(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("Django==5.2.19\nfresh-probe\n# c\ntomli==2.5.0 ; python_version < '3.11'\n")
    assert pins(lock) == {"django": "5.2.19", "tomli": "2.5.0"}
