"""What a wheel built from an sdist depends on besides the sdist: the store key of built wheels.

pip's own wheel cache keys a built wheel by the sdist's URL and hash only, so a
wheel built with ``-C key=a`` is reused for ``-C key=b``. The store must not do
that: a wheel built under build-affecting options (config settings, build
isolation, build/global options, build constraints; from the command line, the
environment or a pip config file) is stored under a digest of the sdist's
sha256 *and* those options, and is built without pip's wheel cache.

Without such options the key stays the sdist's sha256, so the store finds it
as it finds a downloaded wheel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipfresh.pip import options
from pipfresh.pip.config import config_files

# pip install options that change what a build produces (valued, then flags).
_VALUED = options.named(options.BUILD, valued=True)
_FLAGS = options.named(options.BUILD, valued=False)
_SPELLING = {"--config-settings": "-C"}
# The same, as pip reads them from the environment and from config files.
_NAMES = {
    "config-settings",
    "config_settings",
    "build-option",
    "build_option",
    "build-options",
    "global-option",
    "global_option",
    "global-options",
    "build-constraint",
    "build_constraint",
    "no-build-isolation",
    "no_build_isolation",
    "build-isolation",
    "use-pep517",
    "use_pep517",
}
_ENV = {"PIP_" + name.upper().replace("-", "_") for name in _NAMES}


@dataclass(frozen=True)
class BuildOptions:
    """The build-affecting options of one run, in the order pip would read them."""

    options: tuple[str, ...]

    @classmethod
    def of(
        cls, pip_args: Sequence[str], env: Mapping[str, str], prefix: str | None = None
    ) -> BuildOptions:
        """Options from ``pip_args``, pip's environment and the config files pip reads."""
        found = [f"env:{k}={env[k]}" for k in sorted(env) if k in _ENV]
        found += [f"arg:{option}" for option in _from_args(pip_args)]
        found += [f"config:{line}" for line in _from_config_files(env, prefix)]
        return cls(tuple(found))

    @property
    def config_settings(self) -> list[str]:
        """The ``-C`` values pip gives command-line requirements: environment, then arguments."""
        values = []
        for option in self.options:
            if option.startswith("env:PIP_CONFIG_SETTINGS="):
                values += option.split("=", 1)[1].split()
            elif option.startswith("arg:-C="):
                values.append(option.split("=", 1)[1])
        return values

    @property
    def default(self) -> bool:
        """No build-affecting option given: a wheel pip would build anyway."""
        return not self.options

    def key(self, sdist_sha256: str) -> str:
        """The store key of the wheel built from this sdist under these options."""
        if self.default:
            return sdist_sha256
        text = json.dumps(["pipfresh-built-wheel-v1", sdist_sha256, list(self.options)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _from_args(args: Sequence[str]) -> list[str]:
    """The build-affecting options in ``args``, spelt one way (``-C=value``)."""
    out = []
    i = 0
    while i < len(args):
        token = args[i]
        name, eq, value = token.partition("=")
        if name in _FLAGS:
            out.append(token)
        elif name in _VALUED:
            if not eq and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            out.append(f"{_SPELLING.get(name, name)}={value}")
        elif token.startswith("-C") and len(token) > 2:
            out.append(f"-C={token[2:]}")  # -Ckey=value
        i += 1
    return out


def _from_config_files(env: Mapping[str, str], prefix: str | None) -> list[str]:
    """Lines of pip config files that set a build-affecting option (continuations kept)."""
    lines: list[str] = []
    for path in config_files(env, prefix):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        taking = False
        for raw in text.splitlines():
            if raw[:1] in (" ", "\t") and raw.strip():
                if taking:
                    lines.append(f"{path}:{raw.strip()}")
                continue
            name = raw.split("=", 1)[0].strip().lower()
            taking = "=" in raw and name in _NAMES
            if taking:
                lines.append(f"{path}:{raw.strip()}")
    return lines
