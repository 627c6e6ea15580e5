"""A stored wheel as installer's ``WheelSource``: its files are already unpacked."""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from installer.records import parse_record_file
from installer.sources import WheelContentElement, WheelSource

from pipfresh.errors import InstallError
from pipfresh.store.entries import Entry


class StoredFile(io.BytesIO):
    """The "stream" handed to the destination: a stored file's path, read only if asked."""

    def __init__(self, archive_path: str, path: str) -> None:
        super().__init__()
        self.archive_path = archive_path
        self.path = path

    def read(self, size: int | None = -1) -> bytes:
        with open(self.path, "rb") as fp:
            return fp.read() if size is None or size < 0 else fp.read(size)


class StoreSource(WheelSource):
    """A wheel from the store: its files are already unpacked, bytecode aside."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        tops = {rel.split("/", 1)[0] for rel in entry.files}
        infos = [t for t in tops if t.endswith(".dist-info")]
        if len(infos) != 1:
            raise InstallError(f"{entry.wheel_name}: expected one .dist-info directory")
        self._dist_info = infos[0]
        distribution, version = self._dist_info[: -len(".dist-info")].rsplit("-", 1)
        super().__init__(distribution, version)

    @property
    def dist_info_dir(self) -> str:
        return self._dist_info

    @property
    def data_dir(self) -> str:
        return self._dist_info[: -len(".dist-info")] + ".data"

    @property
    def dist_info_filenames(self) -> list[str]:
        base = self._dist_info + "/"
        return [rel[len(base) :] for rel in self.entry.files if rel.startswith(base)]

    def read_dist_info(self, filename: str) -> str:
        path = self.entry.file(posixpath.join(self._dist_info, filename))
        return Path(path).read_text(encoding="utf-8")

    def validate_record(self) -> None:
        """Nothing to do: pip does not validate RECORD on install either."""

    def record_rows(self) -> list[tuple[str, str, str]]:
        return list(parse_record_file(self.read_dist_info("RECORD").splitlines()))

    def get_contents(self) -> Iterator[WheelContentElement]:
        rows = {row[0]: row for row in self.record_rows()}
        bytecode = set(self.entry.pyc.values())
        for rel, st in self.entry.files.items():
            if rel in bytecode:
                continue
            row = rows.get(rel, (rel, "", ""))
            stream = cast(BinaryIO, StoredFile(rel, self.entry.file(rel)))
            yield row, stream, bool(st.mode & 0o111)
