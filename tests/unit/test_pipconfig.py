"""pip's configuration as pip reads it: which value wins, and pip's booleans."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipfresh.pip.config import ConfigError, effective, progress_bar, strtobool


def test_command_section_overrides_global_and_variables_override_both(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nuser = yes\ntimeout = 5\n[install]\n--No_Compile = false\n")
    env = {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path)}
    found = effective(env, None, "install")  # /etc/pip.conf may add its own keys
    assert (found["user"], found["timeout"], found["no-compile"]) == ("yes", "5", "false")
    assert effective({**env, "PIP_USER": "0", "PIP_VERSION": "1"}, None, "install")["user"] == "0"
    assert "no-compile" not in effective(env, None, "download")
    conf.write_bytes(b"[install\n")
    with pytest.raises(ConfigError):
        effective(env, None, "install")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("Yes", True), ("on", True), ("t", True), ("0", False), ("off", False),
     ("FALSE", False), ("n", False)],
)  # fmt: skip
def test_booleans_read_as_pip_reads_them(value: str, expected: bool) -> None:
    assert strtobool(value) is expected


@pytest.mark.parametrize("value", ["", "2", "maybe"])
def test_other_values_are_not_booleans(value: str) -> None:
    with pytest.raises(ConfigError):
        strtobool(value)


def test_progress_bar_is_settled_as_pip_settles_it(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[install]\nprogress-bar = OFF\n")
    env = {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path)}
    assert progress_bar([], env, None) == "off"  # the configuration file
    assert progress_bar([], {**env, "PIP_PROGRESS_BAR": "on"}, None) == "on"  # over the file
    assert progress_bar(["--progress-bar", "on"], env, None) == "on"  # the command line wins
    assert progress_bar(["--progress-bar=off", "--progress-bar", "raw"], {}, None) == "raw"
    conf.write_bytes(b"[install\n")  # a file pip cannot read: pip says so, the default here
    assert progress_bar([], env, None) == "on"
