"""What pip's dry run resolved: the distributions to install, read from its report.

The store installs archives pip resolved from an index or a URL; anything else
(a VCS checkout, a local directory, pip or setuptools themselves) is a reason
to let pip install, and ``items`` says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

# pip installs these with launchers of its own (pip3.12, easy_install-3.12): pip installs them.
_BY_PIP = {"pip", "setuptools"}


@dataclass(frozen=True)
class Item:
    """One distribution of the dry-run report, with what the install needs to know."""

    name: str
    version: str
    url: str
    sha256: str
    is_wheel: bool
    requested: bool
    direct_url: str | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]

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


def from_report(report_path: Path) -> tuple[list[Item], str | None]:
    """The report's items, or the reason the store cannot install them."""
    data = json.loads(report_path.read_text(encoding="utf-8"))
    items = []
    for raw in data.get("install") or []:
        meta = raw.get("metadata") or {}
        name = str(meta.get("name", ""))
        info: dict[str, Any] = raw.get("download_info") or {}
        archive = info.get("archive_info")
        if not isinstance(archive, dict):
            kind = "a VCS checkout" if "vcs_info" in info else "a local directory"
            return [], f"{name} comes from {kind}"
        if canonicalize_name(name) in _BY_PIP and raw.get("is_direct"):
            return [], f"{name} from a direct URL (pip installs it with its own launchers)"
        sha256 = (archive.get("hashes") or {}).get("sha256")
        if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
            sha256 = archive["hash"].split("=", 1)[1]
        if not sha256:
            return [], f"{name} has no sha256 in pip's report"
        url = str(info.get("url", ""))
        filename = url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
        direct = bool(raw.get("is_direct"))
        items.append(
            Item(
                name=name,
                version=str(meta.get("version", "")),
                url=url,
                sha256=str(sha256),
                is_wheel=filename.endswith(".whl"),
                requested=bool(raw.get("requested")),
                direct_url=json.dumps(info, sort_keys=True) if direct else None,
            )
        )
    return items, None
