"""Test and benchmark helpers: a loopback PyPI-like index and tiny distributions.

Exports are loaded lazily so that ``python -m pipfresh.testing.index`` does
not import the module twice (runpy warns when a package pre-imports it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipfresh.testing.dists import build_sdist, build_wheel
    from pipfresh.testing.index import Counters, DistFile, PackageIndex, Record

__all__ = ["Counters", "DistFile", "PackageIndex", "Record", "build_sdist", "build_wheel"]

_HOMES = {
    "Counters": "index",
    "DistFile": "index",
    "PackageIndex": "index",
    "Record": "index",
    "build_sdist": "dists",
    "build_wheel": "dists",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
