"""The ``/simple/`` pages (PEP 503 HTML, PEP 691 JSON), rendered on every request.

Rendering from the files each time means a publish changes the pages, and
their ETags, at once.  The bytes match what PyPI sends field for field where
pip's behaviour depends on it (hashes, ``requires-python``, PEP 658/714 keys).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pipfresh.testing.index.files import DistFile
from pipfresh.testing.index.http import JSON_V1

__all__ = ["API_VERSION", "render_project", "render_root"]

API_VERSION = "1.1"


def _html_page(title: str, body_lines: Sequence[str]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>{html.escape(title)}</title>",
        "  </head>",
        "  <body>",
        *(f"    {line}" for line in body_lines),
        "  </body>",
        "</html>",
        "",
    ]
    return "\n".join(lines).encode()


def render_root(projects: list[str], ctype: str) -> bytes:
    if ctype == JSON_V1:
        doc = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
        return json.dumps(doc, separators=(",", ":")).encode()
    links = [f'<a href="{quote(p)}/">{html.escape(p)}</a><br />' for p in projects]
    return _html_page("Simple index", links)


def render_project(
    project: str,
    dists: list[DistFile],
    ctype: str,
    bare: bool = False,
    yanked: Mapping[str, str] | None = None,
) -> bytes:
    """The project's page; ``bare``: links only, as a static directory listing has;
    ``yanked``: filename -> the reason it is yanked."""
    if ctype == JSON_V1:
        return _project_json(project, dists, bare, yanked or {})
    return _project_html(project, dists, bare, yanked or {})


def _project_json(
    project: str, dists: list[DistFile], bare: bool, yanked: Mapping[str, str]
) -> bytes:
    files = []
    for d in dists:
        entry: dict[str, Any] = {
            "filename": d.filename,
            "url": f"../../files/{quote(d.filename)}",
            "hashes": {} if bare else {"sha256": d.sha256},
        }
        if not bare:
            entry["size"] = d.size
            entry["upload-time"] = d.upload_time
        if d.requires_python is not None:
            entry["requires-python"] = d.requires_python
        if d.filename in yanked:
            entry["yanked"] = yanked[d.filename] or True
        if d.metadata_sha256 is not None and not bare:
            # PEP 714: never the "dist-info-metadata" key, which crashes pip
            # 22.3-23.1; PyPI also sends its historical "data-" misspelling.
            entry["core-metadata"] = {"sha256": d.metadata_sha256}
            entry["data-dist-info-metadata"] = {"sha256": d.metadata_sha256}
        files.append(entry)
    versions = sorted({d.version for d in dists})
    doc = {
        "meta": {"api-version": API_VERSION},
        "name": project,
        "versions": [str(v) for v in versions],
        "files": files,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _project_html(
    project: str, dists: list[DistFile], bare: bool, yanked: Mapping[str, str]
) -> bytes:
    links = []
    for d in dists:
        fragment = "" if bare else f"#sha256={d.sha256}"
        attrs = [f'href="../../files/{quote(d.filename)}{fragment}"']
        if d.requires_python is not None:
            attrs.append(f'data-requires-python="{html.escape(d.requires_python)}"')
        if d.filename in yanked:
            attrs.append(f'data-yanked="{html.escape(yanked[d.filename])}"')
        if d.metadata_sha256 is not None and not bare:
            attrs.append(f'data-dist-info-metadata="sha256={d.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={d.metadata_sha256}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(d.filename)}</a><br />")
    heading = f"<h1>Links for {html.escape(project)}</h1>"
    return _html_page(f"Links for {project}", [heading, *links])
