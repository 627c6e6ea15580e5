"""Where pip reads its configuration files from, as pip itself decides.

Three modules need the list (the store's build key, whether a resolution may be
reused, whether the store installer applies), so it is worked out once here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


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
