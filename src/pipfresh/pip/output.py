"""What ``pip install`` prints about what it installs, for the installs the store makes.

pip's install ends with ``Installing collected packages: a, b`` in its installation
order, an ``Attempting uninstall: a`` block for each version it replaces, and
``Successfully installed a-1.0 b-2.0`` sorted by name. Each name is spelled as pip's
resolver spelled it: as the requirement that first named the project (``Django`` on
the command line, ``typing_extensions`` in a Requires-Dist), which pip's dry run logs
as ``Collecting <requirement>`` (``spellings``). pip names the headers directory
after it too.

The order is pip's ``get_topological_weights`` over its resolver's graph, rebuilt
here (``installation_order``): the report's distributions and those already in the
target, with their Requires-Dist (markers evaluated in the report's environment),
``name[extra]`` nodes, and the ``Requires-Python`` node of each distribution being
installed, as pip's resolvelib provider builds it (pip 23.0 to 26.3). Distributions
outside the target's site-packages (a venv that sees system site-packages) are not
read, so a dependency found only there is left out.

Usage::

    lines = Lines.of(report, spellings(log_text), facts, pip_args, env, pip_version)
    print(lines.installing())
    ...  # uninstall, install; ``Uninstalls`` gathers pip's blocks meanwhile
    print(lines.installed())
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipfresh.pip.config import ConfigError, PipConfig, progress_bar, strtobool
from pipfresh.target.interpreter import Facts

PYTHON = "<Python from Requires-Python>"  # pip's REQUIRES_PYTHON_IDENTIFIER

# pip 25.1 shows an install progress bar (empty line left when not on a terminal) and
# visits each node at most 5 times when weighing a cycle.
_PROGRESS_AND_CAP = Version("25.1")
_VISITS = 5

# A top-level "Collecting <requirement>[ (from <parents>)]" line of pip's log file: the
# timestamp, one space (deeper lines, a build environment's pip among them, are indented).
_COLLECTING = re.compile(r"^\S+ Collecting (.+?)(?: \(from .*\))?$", re.MULTILINE)


def spellings(log_text: str) -> dict[str, str]:
    """Canonical name -> the name as the first ``Collecting`` line of pip's log spells it."""
    found: dict[str, str] = {}
    for text in _COLLECTING.findall(log_text):
        try:
            name = Requirement(text).name
        except InvalidRequirement:  # an unnamed URL: pip takes the name from its metadata
            continue
        found.setdefault(str(canonicalize_name(name)), name)
    return found


def display_name(item_name: str, url: str, spelled: Mapping[str, str]) -> str:
    """The name pip gives a distribution it installs: as the resolver spelled it; for a
    local wheel, as its file name does; else as its metadata does."""
    key = str(canonicalize_name(item_name))
    if key in spelled:
        return spelled[key]
    filename = url.rsplit("/", 1)[-1]
    if url.startswith("file:") and filename.endswith(".whl"):
        return filename.split("-", 1)[0].replace("_", "-")  # pip's Wheel(filename).name
    return item_name


# -- the resolver's graph --------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """A distribution as pip's resolver sees it: what it requires."""

    requires: tuple[str, ...]
    requires_python: str = ""
    extras: frozenset[str] = frozenset()  # Provides-Extra, canonical
    installing: bool = True  # a candidate to install (one already installed has no Python node)


def installed_dists(facts: Facts) -> dict[str, Dist]:
    """The target's distributions, by canonical name, as its metadata describes them."""
    paths = list(dict.fromkeys(d for d in (facts.purelib, facts.platlib) if d))
    found: dict[str, Dist] = {}
    for dist in metadata.distributions(path=paths):
        try:
            name = dist.metadata["Name"]
            if not name:
                continue
            extras = frozenset(_canon(e) for e in dist.metadata.get_all("Provides-Extra") or ())
            found.setdefault(_canon(name), Dist(tuple(dist.requires or ()), "", extras, False))
        except (OSError, ValueError):
            continue
    return found


def _canon(name: str) -> str:
    return str(canonicalize_name(name))


def _identifier(name: str, extras: Iterable[str]) -> str:
    """pip's ``format_name``: ``name[a,b]`` with the extras canonical and sorted."""
    extras = sorted({_canon(e) for e in extras})
    return f"{name}[{','.join(extras)}]" if extras else name


@dataclass
class Graph:
    """pip's resolver graph: ``None`` is the root, children are what a node requires."""

    dists: Mapping[str, Dist]
    environment: Mapping[str, str]
    with_deps: bool = True  # --no-deps: every candidate requires only its Python
    requires_python: bool = True  # --ignore-requires-python: no Python node
    children: dict[str | None, set[str]] = field(default_factory=lambda: {None: set()})

    def add(self, node: str, under_root: bool) -> None:
        """``node`` with all it requires; a child of the root when the user asked for it
        (pip's graph reaches the others from a root too, maybe one already installed)."""
        if under_root:
            self.children[None].add(node)
        todo = [node]
        while todo:
            current = todo.pop()
            if current not in self.children:
                self.children[current] = kids = self._requires(current)
                todo += kids

    def _requires(self, node: str) -> set[str]:
        if node == PYTHON:
            return set()
        base, _sep, rest = node.partition("[")
        dist = self.dists[base]
        kids: set[str] = set()
        if rest:  # pip's ExtrasCandidate: the base itself, and what the valid extras add
            extras = set(rest[:-1].split(",")) & dist.extras
            kids.add(base)
        else:
            extras = set()
            if self.requires_python and dist.installing and dist.requires_python.strip():
                kids.add(PYTHON)
        if self.with_deps:
            kids |= self._dependencies(dist, sorted(extras))
        return kids

    def _dependencies(self, dist: Dist, extras: Sequence[str]) -> set[str]:
        """What ``dist`` requires with ``extras``, as pip's ``iter_dependencies`` and
        ``match_markers`` select it; requirements on nothing pip resolved are left out."""
        found = set()
        for text in dist.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not self._matches(req.marker, extras):
                continue
            name = _canon(req.name)
            if name in self.dists:
                found.add(_identifier(name, req.extras))
        return found

    def _matches(self, marker: Marker, extras: Sequence[str]) -> bool:
        try:
            return any(marker.evaluate({**self.environment, "extra": e}) for e in extras or [""])
        except Exception:  # packaging's marker errors: pip would not select it either
            return False


def topological_weights(
    children: Mapping[str | None, set[str]], keys: set[str], visits: int | None = _VISITS
) -> dict[str, int]:
    """pip's ``get_topological_weights``: leaves pruned again and again, each round's
    weighing more; what a cycle keeps, by its longest path from the root (each node
    visited at most ``visits`` times, pip >= 25.1; children in sorted order)."""
    graph = {node: set(kids) for node, kids in children.items()}
    for kids in children.values():
        for kid in kids:
            graph.setdefault(kid, set())
    weights: dict[str, list[int]] = {}
    while True:
        leaves = {node for node, kids in graph.items() if node is not None and not kids}
        if not leaves:
            break
        weight = len(graph) - 1
        for leaf in leaves:
            if leaf in keys:
                weights[leaf] = [weight]
            del graph[leaf]
        for kids in graph.values():
            kids -= leaves
    path: set[str | None] = set()

    def visit(node: str | None) -> None:
        if node in path:
            return
        seen = weights.get(node, []) if node is not None else []
        if visits is not None and len(seen) >= visits:
            return
        path.add(node)
        for kid in sorted(graph.get(node, ())):
            visit(kid)
        path.remove(node)
        if node is not None and node in keys:
            seen.append(len(path))
            weights[node] = seen

    visit(None)
    return {node: max(found) for node, found in weights.items()}


def installation_order(
    report: Mapping[str, Any],
    installed: Mapping[str, Dist],
    *,
    with_deps: bool = True,
    requires_python: bool = True,
    pip_version: Version = _PROGRESS_AND_CAP,
) -> list[str]:
    """The report's distributions (canonical names) in the order pip installs them."""
    dists = dict(installed)
    roots: list[str] = []
    keys: list[str] = []
    for raw in report.get("install") or []:
        meta = raw.get("metadata") or {}
        name = _canon(str(meta.get("name", "")))
        extras = frozenset(_canon(e) for e in meta.get("provides_extra") or ())
        requires = tuple(meta.get("requires_dist") or ())
        dists[name] = Dist(requires, str(meta.get("requires_python") or ""), extras)
        keys.append(name)
        if raw.get("requested"):
            roots.append(_identifier(name, raw.get("requested_extras") or ()))
    graph = Graph(dists, dict(report.get("environment") or {}), with_deps, requires_python)
    for root in roots:
        graph.add(root, under_root=True)
    for key in keys:
        graph.add(key, under_root=False)
    visits = _VISITS if pip_version >= _PROGRESS_AND_CAP else None
    weights = topological_weights(graph.children, set(keys), visits)
    return sorted(keys, key=lambda k: (weights.get(k, 0), k), reverse=True)


# -- the lines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lines:
    """What pip prints about one install, the store's or pip's part of it alike."""

    order: list[str]  # canonical names, in pip's installation order
    names: Mapping[str, str]  # canonical name -> as pip spells it
    versions: Mapping[str, str]  # canonical name -> version, as pip prints it
    progress_left: bool  # pip's progress bar leaves an empty line (not on a terminal)

    @classmethod
    def of(
        cls,
        report: Mapping[str, Any],
        names: Mapping[str, str],
        facts: Facts,
        pip_args: Sequence[str],
        env: Mapping[str, str],
        pip_version: Version,
        config: PipConfig | None = None,
    ) -> Lines:
        options = _Options.of(config or PipConfig.load(pip_args, env, facts.prefix))
        order = installation_order(
            report,
            installed_dists(facts),
            with_deps=options.with_deps,
            requires_python=options.requires_python,
            pip_version=pip_version,
        )
        versions = {}
        for raw in report.get("install") or []:
            meta = raw.get("metadata") or {}
            versions[_canon(str(meta.get("name", "")))] = _shown(str(meta.get("version", "")))
        bar = pip_version >= _PROGRESS_AND_CAP and options.progress_bar == "on"
        left = bar and len(order) > 1 and not _on_terminal(env)
        return cls(order, {k: names.get(k, k) for k in order}, versions, left)

    def installing(self) -> str:
        return f"Installing collected packages: {', '.join(self.names[k] for k in self.order)}"

    def installed(self) -> str:
        done = sorted((self.names[k], self.versions.get(k, "")) for k in self.order)
        return "Successfully installed " + " ".join(f"{n}-{v}" if v else n for n, v in done)

    def after_uninstalls(self) -> list[str]:
        """What pip prints once every distribution is installed, before its last line."""
        return [""] if self.progress_left else []


def _shown(version: str) -> str:
    """A version as pip prints an installed one (``packaging``'s normal form)."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def _on_terminal(env: Mapping[str, str]) -> bool:
    """Whether pip's console (rich) draws on stdout as on a terminal: rich's own rule."""
    compatible = env.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if "FORCE_COLOR" in env:
        return env["FORCE_COLOR"] != ""
    try:
        return sys.stdout.isatty()
    except ValueError:
        return False


@dataclass(frozen=True)
class _Options:
    """The pip options that change what pip's graph holds or what it prints."""

    with_deps: bool = True
    requires_python: bool = True
    progress_bar: str = "on"

    @classmethod
    def of(cls, config: PipConfig) -> _Options:
        args = config.args
        try:
            values = config.values()
        except ConfigError:
            values = {}

        def flag(*names: str) -> bool:
            if any(f"--{n}" in args for n in names):
                return True
            try:
                return any(n in values and strtobool(values[n]) for n in names)
            except ConfigError:
                return False

        return cls(
            with_deps=not flag("no-deps", "no-dependencies"),
            requires_python=not flag("ignore-requires-python"),
            progress_bar=progress_bar(args, config.env, config.prefix, config),
        )


class Uninstalls:
    """pip's ``Attempting uninstall`` blocks, gathered from the pips pipfresh runs (``pip
    uninstall`` for the store's, the short ``pip install`` for pip and setuptools), to be
    printed in pip's installation order."""

    def __init__(self) -> None:
        self.blocks: dict[str, list[str]] = {}
        self.raw: list[str] = []  # everything seen, for a pip that failed
        self._current: str | None = None

    def from_uninstall(self, line: str) -> None:
        """A line of ``pip uninstall``: ``Found existing installation: <name> <version>``
        starts a distribution's block."""
        self.raw.append(line)
        if line.startswith("Found existing installation: "):
            name = line.split(": ", 1)[1].rsplit(" ", 1)[0]
            self._current = _canon(name)
            self.blocks[self._current] = []
        if self._current is not None:
            self.blocks[self._current].append(line)

    def from_install(self, line: str) -> None:
        """A line of ``pip install``: its ``Attempting uninstall`` blocks are kept."""
        self.raw.append(line)
        if line.startswith("  Attempting uninstall: "):
            self._current = _canon(line.split(": ", 1)[1].strip())
            self.blocks[self._current] = []
        elif self._current is not None and line.startswith("    "):
            self.blocks[self._current].append(line[4:])
        else:
            self._current = None

    def lines(self, summary: Lines) -> Iterator[str]:
        for key in summary.order:
            if key in self.blocks:
                yield f"  Attempting uninstall: {summary.names[key]}"
                yield from (f"    {line}" for line in self.blocks[key])


__all__ = [
    "PYTHON",
    "Dist",
    "Graph",
    "Lines",
    "Uninstalls",
    "display_name",
    "installation_order",
    "installed_dists",
    "spellings",
    "topological_weights",
]
