"""Where pip reads its configuration from, and what it then sets, as pip itself decides.

Three modules need the list of files (the store's build key, whether a
resolution may be reused, whether the store installer applies), and the
installer decision needs the values pip ends up with (``PIP_USER=0``, which tox
always exports, is not ``--user``), so both are worked out once here.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipfresh.pip.args import option_values


def config_files(env: Mapping[str, str], prefix: str | None) -> list[Path]:
    """pip's config files: global, user, site (the target's prefix), ``PIP_CONFIG_FILE``.

    ``PIP_CONFIG_FILE=/dev/null`` means none at all (pip then skips every file).
    A file that does not exist is listed anyway: it may appear later.
    """
    given = env.get("PIP_CONFIG_FILE")
    if given == os.devnull:
        return []
    xdg_dirs = env.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    xdg_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files = [Path(d, "pip", "pip.conf") for d in xdg_dirs.split(os.pathsep) if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    if prefix:
        files.append(Path(prefix, "pip.conf"))
    if given:
        files.append(Path(given))
    return files


class ConfigError(ValueError):
    """pip's configuration cannot be read as pip reads it (pip reports it itself)."""


def _normalize(name: str) -> str:
    """pip's ``_normalize_name``: ``--No_Compile`` and ``no-compile`` are one key."""
    name = name.lower().replace("_", "-")
    return name[2:] if name.startswith("--") else name


def effective(env: Mapping[str, str], prefix: str | None, command: str) -> dict[str, str]:
    """The raw value pip takes for each option key of ``command``: ``[global]``, then
    ``[<command>]``, then ``PIP_*`` variables, each overriding the one before; within a
    section the last file wins (pip's ``_get_ordered_configuration_items``)."""
    sections: dict[str, dict[str, str]] = {"global": {}, command: {}}
    for path in config_files(env, prefix):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} (unreadable: {exc})") from None
        for section, values in sections.items():
            if parser.has_section(section):
                values.update({_normalize(k): v for k, v in parser.items(section)})
    values = {**sections["global"], **sections[command]}
    for key, value in env.items():
        if key.startswith("PIP_") and (name := _normalize(key[4:])) not in _ENV_IGNORED:
            values[name] = value
    return values


_ENV_IGNORED = ("version", "help", "config-file")  # pip's ENV_NAMES_IGNORED, and the file
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


def strtobool(value: str) -> bool:
    """pip's reading of a boolean setting (``PIP_USER=0`` is false); ``ConfigError`` else."""
    lowered = value.lower()  # no strip: pip refuses "0 " (config files strip values anyway)
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{value!r} is not a boolean")


@dataclass(frozen=True)
class PipConfig:
    """pip install's configuration for one run, read once (``load``) and passed down:
    the ``PIP_*`` environment and config files as ``effective`` merges them.

        config = PipConfig.load(pip_args, env, target.facts.prefix)
        config.values()        # ConfigError when pip could not read it either
    """

    args: tuple[str, ...]
    env: Mapping[str, str]
    prefix: str | None
    settings: Mapping[str, str] | None  # None: unreadable (``error`` says why)
    error: ConfigError | None = None

    @classmethod
    def load(cls, args: Sequence[str], env: Mapping[str, str], prefix: str | None) -> PipConfig:
        try:
            return cls(tuple(args), env, prefix, effective(env, prefix, "install"))
        except ConfigError as exc:
            return cls(tuple(args), env, prefix, None, exc)

    def values(self) -> dict[str, str]:
        """``effective(env, prefix, "install")``, as read at ``load``."""
        if self.settings is None:
            raise self.error or ConfigError("pip's configuration was not read")
        return dict(self.settings)


def progress_bar(
    args: Sequence[str],
    env: Mapping[str, str],
    prefix: str | None,
    config: PipConfig | None = None,
) -> str:
    """pip's ``--progress-bar`` as pip settles it (``on`` unless set): the command line's
    last, else ``PIP_PROGRESS_BAR`` or pip's configuration (``config``, when read
    already). Both pip's console lines (``output``) and pipfresh's own progress
    (``cli.progress``) follow it."""
    given = list(option_values(args, {"--progress-bar"}))
    if not given:
        config = config or PipConfig.load(args, env, prefix)
        try:
            given = [config.values().get("progress-bar", "on")]
        except ConfigError:
            given = ["on"]  # pip reports the bad file itself
    return given[-1].strip().lower()
