"""The ``WheelDestination`` that plans an install: where installer would put each file.

Nothing is written: installer runs once per stored wheel against this destination,
and what it records becomes the entry's ``Plan``, replayed by every install.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, BinaryIO

from installer.destinations import WheelDestination
from installer.records import RecordEntry
from installer.utils import Scheme as SchemeName
from installer.utils import parse_entrypoints

from pipfresh.store.source import StoredFile, StoreSource

if TYPE_CHECKING:
    from installer.scripts import ScriptSection


class Recorder(WheelDestination):
    """Where ``installer`` would put each file of a stored wheel, recorded, nothing written.

    Run once per entry: its answers (a ``Plan``) are replayed by every install.
    """

    def __init__(self, entry_points: set[str]) -> None:
        self.entry_points = entry_points
        self.files: list[tuple[str, str, str, bool]] = []  # scheme, path, archive path, exec
        self.scripts: list[tuple[str, str, str, str]] = []  # name, module, attr, section

    def write_file(
        self,
        scheme: SchemeName,
        path: str | os.PathLike[str],
        stream: BinaryIO,
        is_executable: bool,
    ) -> RecordEntry:
        path = os.fspath(path)
        wrapper = scheme == "scripts" and is_entry_point_wrapper(path, self.entry_points)
        if isinstance(stream, StoredFile) and not wrapper:
            self.files.append((str(scheme), path, stream.archive_path, is_executable))
        return RecordEntry(path, None, None)

    def write_script(
        self, name: str, module: str, attr: str, section: ScriptSection
    ) -> RecordEntry:
        self.scripts.append((name, module, attr, str(section)))
        return RecordEntry(name, None, None)

    def finalize_installation(
        self,
        scheme: SchemeName,
        record_file_path: str,
        records: Iterable[tuple[SchemeName, RecordEntry]],
    ) -> None:
        self.root = str(scheme)


def is_entry_point_wrapper(path: str, entry_points: set[str]) -> bool:
    """A setuptools wrapper for an entry point: pip skips it (it writes its own launcher)."""
    name = os.path.basename(path)
    lower = name.lower()
    for suffix in (".exe", "-script.py", ".pya"):
        if lower.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name in entry_points


def entry_point_names(source: StoreSource) -> set[str]:
    """The wheel's console and GUI script names, read as installer reads them."""
    if "entry_points.txt" not in source.dist_info_filenames:
        return set()
    text = source.read_dist_info("entry_points.txt")
    return {name for name, _module, _attr, _section in parse_entrypoints(text)}
