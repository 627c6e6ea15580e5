"""The RECORD pip writes for a wheel it installed: built from the wheel's own, then written.

pip's rules: the wheel's rows kept (paths moved to where the files went, rewritten
scripts hashed again), generated files (launchers, ``INSTALLER``...) hashed, bytecode
listed without a hash; sorted, CSV with CRLF line ends.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping

Row = tuple[str, str, str]  # path, "sha256=<urlsafe b64>", size


def hashed(data: bytes) -> tuple[str, str]:
    """A RECORD row's hash and size fields for ``data``."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"sha256={digest}", str(len(data))


def build(
    wheel_rows: Iterable[Row],
    installed: Mapping[str, str],
    changed: Iterable[str],
    generated: Iterable[tuple[str, bytes]],
    read: Callable[[str], bytes],
) -> list[Row]:
    """pip's RECORD rows, sorted.

    ``installed`` maps a wheel's archive path (or a bytecode file) to its RECORD path;
    an installed path not in the wheel's RECORD is listed without a hash. ``changed``
    are RECORD paths whose content was rewritten (``read`` gives it), ``generated`` the
    RECORD paths and contents of files the install wrote.

    >>> build([("a.py", "sha256=x", "1")], {"a.py": "a.py", "p": "b.pyc"}, [], [], bytes)
    [('a.py', 'sha256=x', '1'), ('b.pyc', '', '')]
    """
    left = dict(installed)
    rewritten = set(changed)
    rows: list[Row] = []
    for path, digest, size in wheel_rows:
        new = left.pop(path, path)
        if new in rewritten:
            digest, size = hashed(read(new))
        rows.append((new, digest, size))
    rows += [(rel, *hashed(data)) for rel, data in generated]
    rows += [(path, "", "") for path in left.values()]
    return sorted(rows)


def write(path: str, rows: Iterable[Row]) -> None:
    """Write RECORD as pip does (csv's CRLF), replacing a file (or store link) there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    with open(path, "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
