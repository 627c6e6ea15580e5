"""pip's installation report (``--report``, format "1", pip >= 23.0), read as data, once.

The report says exactly what pip installed and from which URL, which is what
the summary counts; nothing is taken from pip's human-readable output. Two views
of the same entries: ``load`` (every entry, ``Installed``: what the summary and
the cache's usage count) and ``items`` (what the store installs, ``Item``: archives
pip resolved from an index or a URL; anything else, a VCS checkout, a local
directory, pip or setuptools themselves, is a reason to let pip install).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

# pip installs these with launchers of its own (pip3.12, easy_install-3.12): pip installs them.
_BY_PIP = {"pip", "setuptools"}


def _filename(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]


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
    vcs: bool = False  # a VCS checkout
    direct_url: str | None = None  # its ``download_info`` as JSON, when ``is_direct``

    @property
    def canonical_name(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Item:
    """One distribution the store installs, with what the install needs to know."""

    name: str
    version: str
    url: str
    sha256: str
    is_wheel: bool
    requested: bool
    direct_url: str | None

    @property
    def filename(self) -> str:
        return _filename(self.url)

    @property
    def via_pip(self) -> bool:
        """Whether pip, not the store, installs it (see ``_BY_PIP``)."""
        return canonicalize_name(self.name) in _BY_PIP

    def requirement(self) -> str:
        """A pinned requirement line; the ``#sha256=`` fragment gives the link the same
        key in pip's wheel cache as the index's link, so a wheel built here is found by
        the next resolution (which then needs no build dependencies)."""
        url = self.url.split("#", 1)[0]
        return f"{self.name} @ {url}#sha256={self.sha256} --hash=sha256:{self.sha256}"


class ReportError(ValueError):
    """The report is missing or not in a format we know."""


def load(path: Path) -> list[Installed]:
    """Every entry of the report (``ReportError`` when it cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read pip's report {path}: {exc}") from None
    if not isinstance(data, dict) or str(data.get("version", "")).split(".")[0] != "1":
        raise ReportError(f"pip's report {path} has an unknown format")
    return _entries(data)


def items(report_path: Path) -> tuple[list[Item], str | None]:
    """The report's items for the store, or the reason the store cannot install them
    (``OSError``/``ValueError`` when it cannot be read)."""
    return items_of(json.loads(report_path.read_text(encoding="utf-8")))


def items_of(data: Any) -> tuple[list[Item], str | None]:
    """``items`` of a report already read."""
    out = []
    for entry in _entries(data):
        if entry.local:
            kind = "a VCS checkout" if entry.vcs else "a local directory"
            return [], f"{entry.name} comes from {kind}"
        if entry.canonical_name in _BY_PIP and entry.is_direct:
            return [], f"{entry.name} from a direct URL (pip installs it with its own launchers)"
        if not entry.sha256:
            return [], f"{entry.name} has no sha256 in pip's report"
        out.append(
            Item(
                name=entry.name,
                version=entry.version,
                url=entry.url,
                sha256=entry.sha256,
                is_wheel=entry.is_wheel,
                requested=entry.requested,
                direct_url=entry.direct_url,
            )
        )
    return out, None


def _entries(data: Any) -> list[Installed]:
    raw_entries = data.get("install") if isinstance(data, dict) else None
    return [_entry(raw) for raw in raw_entries or [] if isinstance(raw, dict)]


def _entry(raw: dict[str, Any]) -> Installed:
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
    is_direct = bool(raw.get("is_direct"))
    return Installed(
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        url=url,
        is_wheel=_filename(url).endswith(".whl"),
        is_direct=is_direct,
        requested=bool(raw.get("requested")),
        sha256=str(sha256) if sha256 else None,
        local=not isinstance(archive, dict),
        vcs="vcs_info" in info,
        direct_url=json.dumps(info, sort_keys=True) if is_direct else None,
    )
