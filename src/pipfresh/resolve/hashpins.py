"""The user's ``--hash`` pins: the store installs only what pip would have verified.

pip checks each archive it installs against the ``--hash`` options given for its
name in requirement and constraint files, and in hash-checking mode
(``--require-hashes``, on the command line, in a file, in ``PIP_REQUIRE_HASHES``
or pip's configuration, or implied by any ``--hash`` or a ``pylock.toml``)
refuses a name that has none. The store installs what pip's dry run reported, and a dry run that
downloads nothing (pip >= 26 with PEP 658 metadata) checked nothing; so the
report is held against the pins first, and whatever does not match, or cannot
be told, is left to plain pip, which gives its own error.

    pins = hashpins.read(pip_args, env, target.facts)
    why = pins.refusal(items)   # None: every item is what pip would accept
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipfresh.pip import reqfiles
from pipfresh.pip.args import option_values
from pipfresh.pip.config import ConfigError, PipConfig, strtobool
from pipfresh.pip.report import Item
from pipfresh.target.interpreter import Facts

_REQUIRE = "--require-hashes"
_NO_REQUIRE = "--no-require-hashes"
_FLAGS = (_REQUIRE, _NO_REQUIRE)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pip's own copy (pip is a dependency)
    from pip._vendor import tomli as tomllib


@dataclass(frozen=True)
class Pins:
    """What the user pinned: the sha256s each name may have, and whether pip checks
    every name (hash-checking mode)."""

    checking: bool
    sha256: Mapping[str, frozenset[str]]  # canonical name -> sha256 hex pip accepts
    unknown: str | None = None  # a source pipfresh cannot read pins from: why

    def refusal(self, items: Iterable[Item]) -> str | None:
        """Why pip, not the store, must install ``items`` (None if nothing is amiss)."""
        if self.unknown is not None:
            return self.unknown
        for item in items:
            allowed = self.sha256.get(str(canonicalize_name(item.name)))
            if allowed is None:
                if self.checking:
                    return f"{item.name} has no --hash (hash-checking mode): pip's to report"
            elif item.sha256.lower() not in allowed:
                return f"{item.name} {item.version} matches none of its --hash pins"
        return None


def read(
    pip_args: Sequence[str], env: Mapping[str, str], facts: Facts, config: PipConfig | None = None
) -> Pins:
    """The pins of the requirement, constraint and lock files pip reads for ``pip_args``.

    A line whose marker does not hold for the target is skipped, as pip skips it
    (its ``--hash`` still turns hash-checking mode on); the pins of the lines that
    name one project are intersected, so the store never accepts a hash pip
    would refuse. ``config``: pip's configuration, when read already.
    """
    try:
        settings = (config or PipConfig.load(pip_args, env, facts.prefix)).values()
        given = {o: _flag(pip_args, o) or strtobool(settings.get(o[2:], "0")) for o in _FLAGS}
    except ConfigError as exc:
        return Pins(False, {}, f"pip's configuration: {exc}")
    markers = marker_environment(facts)
    names = list(option_values(pip_args, reqfiles.ALL))
    for option in ("requirement", "constraint"):  # PIP_CONSTRAINT, constraint = ... in pip.conf
        names += settings.get(option, "").split()
    locks = [n for n in names if _is_lock(n)]
    lines = reqfiles.walk([n for n in names if n not in locks], reqfiles.ALL)
    unknown = next((f"--hash pins in {u} cannot be read" for u in lines.unread), None)
    found: list[tuple[str, frozenset[str]]] = []
    for lock in locks:
        try:
            found += _lock_pins(lock, markers).items()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            unknown = unknown or f"the hashes in {lock} cannot be read ({exc})"
    checked = bool(locks)  # any hash to check: pip checks a lock's too
    for line in lines.lines:
        requirement, options = line.split()
        if line.is_option:
            for option in given:
                given[option] = given[option] or _flag(options, option)
            continue
        hashes = list(option_values(options, {"--hash"}))
        if not hashes:
            continue
        checked = True
        name = _name(requirement, markers)
        if name is None:
            unknown = unknown or f"--hash on a requirement pipfresh cannot name: {requirement}"
        elif name:  # "": its marker excludes the target
            found.append((name, frozenset(_sha256(h) for h in hashes)))
    by_name: dict[str, frozenset[str]] = {}
    for name, sha256 in found:
        by_name[name] = by_name[name] & sha256 if name in by_name else sha256
    checking = given[_REQUIRE] or (checked and not given[_NO_REQUIRE])
    return Pins(checking, by_name, unknown)


def _sha256(value: str) -> str:
    """The hex of ``sha256:<hex>``; other algorithms give "" (matching no report)."""
    algorithm, _, digest = value.partition(":")
    return digest.lower() if algorithm == "sha256" else ""


def _flag(tokens: Iterable[str], option: str) -> bool:
    """Whether ``tokens`` give ``option``, or an abbreviation pip would take for it."""
    shortest = len("--no-req") if option == _NO_REQUIRE else len("--require-")
    return any(len(t) >= shortest and option.startswith(t) for t in tokens)


def _name(requirement: str, markers: dict[str, str]) -> str | None:
    """The canonical name; "" if the line's marker excludes the target; None if the
    line names no project (a path or a URL: pip learns the name from the archive)."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return None
    applies = parsed.marker is None or _holds(str(parsed.marker), markers)
    return str(canonicalize_name(parsed.name)) if applies else ""


def _holds(marker: str, markers: dict[str, str]) -> bool:
    """Whether a marker holds for the target; an undefined or malformed one is taken as
    holding (pins are intersected: a line too many only makes the store refuse more)."""
    try:
        return Marker(marker).evaluate(markers)
    except Exception:
        return True


def _is_lock(name: str) -> bool:
    """A ``pylock.toml`` given as ``-r`` (pip's ``is_valid_pylock_path``): pip >= 26.3
    installs the files it locks, with their hashes, in hash-checking mode."""
    base = name.rsplit("/", 1)[-1]
    return base == "pylock.toml" or (base.startswith("pylock.") and base.endswith(".toml"))


def _lock_pins(name: str, markers: dict[str, str]) -> dict[str, frozenset[str]]:
    """Each locked name's sha256s: of every wheel, sdist and archive of its packages
    whose marker holds for the target (pip installs one of them)."""
    if reqfiles.is_url(name):
        raise ValueError("a URL")
    data = tomllib.loads(Path(name).read_text(encoding="utf-8"))
    pins: dict[str, frozenset[str]] = {}
    for package in data.get("packages", []):
        if package.get("marker") and not _holds(package["marker"], markers):
            continue
        files = [*package.get("wheels", []), package.get("sdist"), package.get("archive")]
        hashes = {str(f["hashes"].get("sha256", "")).lower() for f in files if f}
        key = str(canonicalize_name(package["name"]))
        pins[key] = pins.get(key, frozenset()) | (hashes - {""})
    return pins


_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalVM"}


def marker_environment(facts: Facts) -> dict[str, str]:
    """Marker values for the target: its Python's own, this machine's for the rest
    (``platform_release`` and the like are the same for every interpreter here)."""
    env = {key: str(value) for key, value in default_environment().items()}
    major, minor = facts.version_info[:2]
    env.update(
        python_version=f"{major}.{minor}",
        python_full_version=facts.short_version,
        implementation_name=facts.implementation,
        sys_platform=facts.sys_platform,
        platform_machine=facts.machine,
    )
    if facts.implementation in _IMPLEMENTATIONS:
        env["platform_python_implementation"] = _IMPLEMENTATIONS[facts.implementation]
    if facts.implementation == "cpython":
        env["implementation_version"] = facts.short_version
    return env
