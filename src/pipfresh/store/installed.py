"""Distributions already in the target: a REQUESTED mark dropped, files changed in place."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name, canonicalize_version

from pipfresh.cache import fs
from pipfresh.errors import InstallError
from pipfresh.target.interpreter import Facts

# -- a distribution pip was asked for that the user was not ----------------------------


def unrequest(facts: Facts, name: str, version: str) -> bool:
    """Undo what pip writes for a requirement it was given by name, as for a dependency.

    pip and setuptools are installed by a short ``pip install`` of their own, which
    marks them requested even when the user's install only needed them; pip's install
    of the whole set writes no ``REQUESTED`` for a dependency, and no RECORD row for it
    (every other row is kept byte for byte). Returns whether there was one to remove.
    """
    dist_info = _dist_info(facts, name, version)
    if dist_info is None or not os.path.lexists(os.path.join(dist_info, "REQUESTED")):
        return False
    record = os.path.join(dist_info, "RECORD")
    row = os.path.basename(dist_info) + "/REQUESTED"
    try:
        with open(record, "rb") as fp:
            lines = fp.read().splitlines(keepends=True)
        kept = [line for line in lines if _first_field(line) != row]
        mode = stat.S_IMODE(os.stat(record).st_mode)
        tmp = record + ".pipfresh-new.tmp"
        # RECORD whole, then the file it no longer lists
        fs.write_bytes_atomic(record, b"".join(kept), tmp=tmp, mode=mode)
        os.unlink(os.path.join(dist_info, "REQUESTED"))
    except OSError as exc:
        raise InstallError(f"{name} {version}: cannot drop its REQUESTED: {exc}") from None
    return True


def _first_field(line: bytes) -> str:
    return next(csv.reader([line.decode("utf-8", "replace")]), [""])[0]


def _dist_info(facts: Facts, name: str, version: str) -> str | None:
    """The ``.dist-info`` directory of ``name`` at ``version`` in the target, if any."""
    want = (canonicalize_name(name), canonicalize_version(version))
    for lib in dict.fromkeys(d for d in (facts.purelib, facts.platlib) if d):
        try:
            listing = os.listdir(lib)
        except OSError:
            continue
        for entry in listing:
            if entry.endswith(".dist-info") and "-" in entry:
                dist, _sep, found = entry[: -len(".dist-info")].rpartition("-")
                if (canonicalize_name(dist), canonicalize_version(found)) == want:
                    return os.path.join(lib, entry)
    return None


# -- a target changed in place -------------------------------------------------------


@dataclass(frozen=True)
class ChangedInPlace:
    """An installed distribution whose files no longer match the hashes in its RECORD."""

    name: str
    version: str
    target: str
    files: int  # files whose content differs from RECORD, or that are gone

    def note(self) -> str:
        differ = "file differs" if self.files == 1 else "files differ"
        return (
            f"note: {self.name} {self.version} in {self.target} was changed in "
            f"place ({self.files} {differ} from its RECORD)"
        )


def changed_in_place(facts: Facts, wanted: Iterable[tuple[str, str]]) -> list[ChangedInPlace]:
    """Which of ``wanted`` (name, version), installed at that very version, were changed.

    These are the distributions a run reinstalls (``--force-reinstall``, a repair):
    their files are about to be replaced, so reading them once is the whole cost.
    Only files inside the target are read; a file RECORD lists without a hash
    (bytecode, RECORD itself) is not compared.
    """
    versions = {str(canonicalize_name(n)): canonicalize_version(v) for n, v in wanted}
    found = []
    for lib in dict.fromkeys(d for d in (facts.purelib, facts.platlib) if d):
        try:
            listing = sorted(os.listdir(lib))
        except OSError:
            continue
        for name in listing:
            if not name.endswith(".dist-info") or "-" not in name:
                continue
            dist, _sep, version = name[: -len(".dist-info")].rpartition("-")
            if versions.get(str(canonicalize_name(dist))) != canonicalize_version(version):
                continue
            differ = _differing_files(lib, name, facts.prefix)
            if differ:
                found.append(ChangedInPlace(dist, version, facts.prefix, differ))
    return found


def _differing_files(lib: str, dist_info: str, prefix: str) -> int:
    try:
        with open(os.path.join(lib, dist_info, "RECORD"), encoding="utf-8", newline="") as fp:
            rows = list(csv.reader(fp))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    inside = os.path.abspath(prefix) + os.sep
    differ = 0
    for row in rows:
        if len(row) < 2 or "=" not in row[1]:
            continue
        algorithm, _sep, expected = row[1].partition("=")
        path = os.path.normpath(os.path.join(lib, row[0]))
        if algorithm not in hashlib.algorithms_available or not path.startswith(inside):
            continue
        try:
            digest = hashlib.new(algorithm)
            with open(path, "rb") as fp:
                for block in iter(lambda: fp.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            differ += 1  # gone, or no longer a file
            continue
        if base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=") != expected:
            differ += 1
    return differ
