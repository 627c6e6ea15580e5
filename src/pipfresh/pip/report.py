"""pip's installation report (``--report``, format "1", pip >= 23.0), read as data.

The report says exactly what pip installed and from which URL, which is what
the summary counts; nothing is taken from pip's human-readable output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Installed:
    """One distribution the report lists under ``install``."""

    name: str
    version: str
    url: str
    is_wheel: bool
    is_direct: bool
    requested: bool
    sha256: str | None
    local: bool  # a directory or a VCS checkout: nothing in the HTTP cache to reuse

    @property
    def canonical_name(self) -> str:
        return canonicalize_name(self.name)


class ReportError(ValueError):
    """The report is missing or not in a format we know."""


def load(path: Path) -> list[Installed]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read pip's report {path}: {exc}") from None
    if not isinstance(data, dict) or str(data.get("version", "")).split(".")[0] != "1":
        raise ReportError(f"pip's report {path} has an unknown format")
    return [_item(raw) for raw in data.get("install") or [] if isinstance(raw, dict)]


def _item(raw: dict[str, Any]) -> Installed:
    meta = raw.get("metadata") or {}
    info = raw.get("download_info") or {}
    url = str(info.get("url", ""))
    archive = info.get("archive_info")
    sha256 = None
    if isinstance(archive, dict):
        hashes = archive.get("hashes") or {}
        sha256 = hashes.get("sha256")
        if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
            sha256 = archive["hash"].split("=", 1)[1]
    filename = url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
    return Installed(
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        url=url,
        is_wheel=filename.endswith(".whl"),
        is_direct=bool(raw.get("is_direct")),
        requested=bool(raw.get("requested")),
        sha256=sha256,
        local=not isinstance(archive, dict),
    )
