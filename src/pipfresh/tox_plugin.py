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
"""

from __future__ import annotations

import sys

from tox.config.loader.memory import MemoryLoader
from tox.config.sets import EnvConfigSet
from tox.config.types import Command
from tox.plugin import impl
from tox.session.state import State

OPT_OUT_KEY = "pipfresh"
PASS_ENV = "PIPFRESH_*"


def install_command() -> Command:
    """pipfresh under the interpreter that runs tox, so it is found whatever the env's PATH."""
    return Command([sys.executable, "-m", "pipfresh", "install", "{opts}", "{packages}"])


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
