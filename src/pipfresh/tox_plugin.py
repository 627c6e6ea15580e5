"""tox 4 plugin: with pipfresh installed next to tox, every tox env installs through it.

tox runs ``install_command`` for deps, for the package it built (``--force-reinstall
--no-deps``, editable or not, ``--config-settings``) and for build requirements in
its packaging env; each runs with ``VIRTUAL_ENV`` set to the env, which is the
target pipfresh picks. The plugin only changes defaults:

- ``install_command`` becomes pipfresh, run by tox's own interpreter (allowed as
  an external, so no ``allowlist_externals`` is needed); an ``install_command``
  in the config still wins;
- ``PIPFRESH_*`` joins ``pass_env`` (tox drops variables it does not know).

``pipfresh = false`` in an env (or in ``[testenv]`` for all) opts out.

When ``[tox] requires`` names something the host lacks, tox provisions a tox of
its own (``.tox/.tox``) and runs every env from there: pipfresh joins those
requirements (the version running here, or the place it was installed from), so
the provisioned tox installs through pipfresh too instead of quietly without it.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tox.config.loader.memory import MemoryLoader
from tox.config.sets import ConfigSet, EnvConfigSet
from tox.config.types import Command
from tox.plugin import impl
from tox.session.state import State

OPT_OUT_KEY = "pipfresh"
PASS_ENV = "PIPFRESH_*"


def install_command() -> Command:
    """pipfresh under the interpreter that runs tox, so it is found whatever the env's PATH."""
    return Command([sys.executable, "-m", "pipfresh", "install", "{opts}", "{packages}"])


def requirement() -> Requirement | None:
    """pipfresh as installed here: ``pipfresh @ <url>`` when installed from a directory or
    an archive (as pip recorded it in ``direct_url.json``), else ``pipfresh==<version>``."""
    try:
        dist = distribution("pipfresh")
    except PackageNotFoundError:
        return None  # run from a source tree: nothing to provision from
    try:
        origin = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        origin = None
    located = isinstance(origin, dict) and isinstance(origin.get("url"), str)
    if located and ("dir_info" in origin or "archive_info" in origin):
        return Requirement(f"pipfresh @ {origin['url']}")
    return Requirement(f"pipfresh=={dist.version}")


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    """A provisioned tox gets pipfresh too: it joins ``[tox] requires``, which the host
    satisfies already (so it never causes provisioning by itself)."""
    if "requires" not in core_conf:
        return  # called before provisioning defines it (tox calls this hook once there)
    requires: list[Requirement] = core_conf["requires"]
    if any(canonicalize_name(r.name) == "pipfresh" for r in requires):
        return  # the user's own pin wins
    ours = requirement()
    if ours is not None:
        requires.append(ours)


@impl
def tox_add_env_config(env_conf: EnvConfigSet, state: State) -> None:
    """Called after the env registered its settings: ours go below the user's config."""
    env_conf.add_config(
        keys=[OPT_OUT_KEY],
        of_type=bool,
        default=True,
        desc="install with pipfresh (a fresh, per-ABI pip cache); false: tox's default pip",
    )
    if "install_command" not in env_conf or not env_conf[OPT_OUT_KEY]:
        return  # a runner that does not install with pip, or opted out
    # Loaders are asked in order and the first that knows a key wins: appended last,
    # this one only replaces tox's built-in default.
    env_conf.loaders.append(MemoryLoader(install_command=install_command()))
    pass_env: list[str] = env_conf["pass_env"]
    if PASS_ENV not in pass_env:
        pass_env.append(PASS_ENV)
    allowed: list[str] = env_conf["allowlist_externals"]
    if sys.executable not in allowed:
        allowed.append(sys.executable)
