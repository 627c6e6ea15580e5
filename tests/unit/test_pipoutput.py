"""pip's installation order and names, worked out as pip works them out.

``topological_weights`` is held against pip's own ``get_topological_weights`` (the pip
the tests run, 26.3) on random graphs, cycles included; the whole order against real
pip installs in ``test_fastpath_parity``.
"""

from __future__ import annotations

import random

import pytest
from pip._internal.resolution.resolvelib.resolver import get_topological_weights
from pip._vendor.resolvelib.structs import DirectedGraph

from pipfresh.pip.output import Dist, installation_order, spellings, topological_weights


def _random_graph(rng: random.Random) -> dict[str | None, set[str]]:
    nodes = [f"n{i}" for i in range(rng.randint(1, 9))]
    children: dict[str | None, set[str]] = {
        None: set(rng.sample(nodes, min(len(nodes), rng.randint(1, 3))))
    }
    for node in nodes:
        children[node] = {n for n in nodes if n != node and rng.random() < 0.25}
    return children


def _paths_from_root(children: dict[str | None, set[str]]) -> dict[str, int]:
    """How many simple paths reach each node: pip's walk visits a node once per path."""
    count: dict[str, int] = {}

    def walk(node: str | None, path: set[str | None]) -> None:
        for kid in children.get(node, ()):
            if kid not in path:
                count[kid] = count.get(kid, 0) + 1
                walk(kid, path | {kid})

    walk(None, {None})
    return count


def test_weights_are_pips_own_on_random_graphs() -> None:
    """Below pip's cap of 5 visits per node (where pip's result is its set order's), every
    weight is the one pip gives; graphs with cycles are most of them."""
    rng = random.Random(11)
    compared = cyclic = 0
    while compared < 300:
        children = _random_graph(rng)
        if max(_paths_from_root(children).values(), default=0) >= 5:
            continue
        reachable = set(_paths_from_root(children))  # resolvelib's graph holds no other
        pruned = {n: k & reachable for n, k in children.items() if n is None or n in reachable}
        graph: DirectedGraph[str | None] = DirectedGraph()
        for node in pruned:
            graph.add(node)
        for node, kids in pruned.items():
            for kid in kids:
                graph.connect(node, kid)
        keys = {n for n in reachable if rng.random() < 0.8}
        pips = get_topological_weights(graph.copy(), keys)
        assert topological_weights(pruned, keys) == pips, children
        compared += 1
        cyclic += any(n in _descendants(children, n) for n in reachable)
    assert cyclic > 50


def _descendants(children: dict[str | None, set[str]], node: str) -> set[str]:
    seen: set[str] = set()
    todo = list(children.get(node, ()))
    while todo:
        kid = todo.pop()
        if kid not in seen:
            seen.add(kid)
            todo += children.get(kid, ())
    return seen


def test_order_counts_extras_requires_python_and_installed_dependencies() -> None:
    """Each changes how deep a distribution sits: ``x`` depends on ``base[e]`` (a node
    between it and ``base``: after ``a-user``, which requires ``base``), ``py`` on the
    Python node, ``solo`` on an installed ``old``; ties go by name, last first."""
    env = {"python_version": "3.11", "extra": ""}
    report = {
        "environment": env,
        "install": [
            {"requested": True, "metadata": {"name": "top", "version": "1",
             "requires_dist": ["x", "a-user", "py", "solo", "plain"]}},
            {"metadata": {"name": "a-user", "version": "1", "requires_dist": ["base"]}},
            {"metadata": {"name": "x", "version": "1", "requires_dist": ["base[e]"]}},
            {"metadata": {"name": "base", "version": "1", "provides_extra": ["e"],
             "requires_dist": ["leaf", 'gone; python_version < "3"']}},
            {"metadata": {"name": "py", "version": "1", "requires_python": ">=3"}},
            {"metadata": {"name": "solo", "version": "1", "requires_dist": ["old"]}},
            {"metadata": {"name": "plain", "version": "1"}},
            {"metadata": {"name": "leaf", "version": "1"}},
        ],
    }  # fmt: skip
    installed = {"old": Dist((), installing=False)}
    assert installation_order(report, installed) == [
        "plain", "leaf", "solo", "py", "base", "a-user", "x", "top"
    ]  # fmt: skip
    assert installation_order(report, {}) == [
        "solo", "plain", "leaf", "py", "base", "a-user", "x", "top"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("2026-01-01T00:00:00,000 Collecting Django==4.2 (from -r r.txt (line 1))", "Django"),
        ("2026-01-01T00:00:00,000 Collecting mid-two[extra] (from top_app)", "mid-two"),
        ('2026-01-01T00:00:00,000 Collecting leaf_e; python_version < "4"', "leaf_e"),
        ("2026-01-01T00:00:00,000 Collecting Demo@ https://x.invalid/demo-1.0.tar.gz", "Demo"),
    ],
)
def test_spellings_from_pips_log(line: str, name: str) -> None:
    text = f"{line}\n2026-01-01T00:00:00,000   Collecting {name.upper()}_other (from x)\n"
    assert spellings(text + line.replace(name, name.lower())) == {
        name.lower().replace("_", "-"): name
    }


def test_an_unnamed_url_and_a_build_environments_lines_spell_nothing() -> None:
    text = (
        "2026-01-01T00:00:00,000 Collecting https://x.invalid/demo-1.0.tar.gz\n"
        "2026-01-01T00:00:00,000     Collecting Setuptools>=40 (from -r build.txt)\n"
    )
    assert spellings(text) == {}
