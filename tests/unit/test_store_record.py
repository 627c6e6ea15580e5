"""pip's RECORD rules as ``store.record`` builds them, on synthetic rows."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from pipfresh.store import record


def _field(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def test_hashed_is_urlsafe_base64_without_padding_and_the_size() -> None:
    assert record.hashed(b"") == (_field(b""), "0")
    assert record.hashed(b"abc") == (_field(b"abc"), "3")
    assert "=" not in record.hashed(b"abc")[0].removeprefix("sha256=")


def test_wheel_rows_move_with_their_files_and_keep_their_hashes() -> None:
    wheel = [("pkg/a.py", "sha256=A", "1"), ("x-1.data/scripts/tool", "sha256=T", "2")]
    installed = {"pkg/a.py": "pkg/a.py", "x-1.data/scripts/tool": "../../../bin/tool"}
    rows = record.build(wheel, installed, [], [], bytes)
    assert rows == [("../../../bin/tool", "sha256=T", "2"), ("pkg/a.py", "sha256=A", "1")]


def test_a_rewritten_script_is_hashed_again_from_its_new_content() -> None:
    wheel = [("x-1.data/scripts/tool", "sha256=OLD", "9")]
    installed = {"x-1.data/scripts/tool": "../bin/tool"}
    new = b"#!/venv/bin/python\nprint()\n"
    rows = record.build(wheel, installed, ["../bin/tool"], [], lambda rel: new)
    assert rows == [("../bin/tool", *record.hashed(new))]


def test_generated_files_are_hashed_and_bytecode_is_listed_without_hash() -> None:
    wheel = [("x-1.dist-info/RECORD", "", "")]
    installed = {"/t/pkg/__pycache__/a.cpython-312.pyc": "pkg/__pycache__/a.cpython-312.pyc"}
    generated = [("x-1.dist-info/INSTALLER", b"pip\n"), ("../bin/run", b"launcher")]
    rows = record.build(wheel, installed, [], generated, bytes)
    assert rows == sorted(
        [
            ("x-1.dist-info/RECORD", "", ""),
            ("x-1.dist-info/INSTALLER", *record.hashed(b"pip\n")),
            ("../bin/run", *record.hashed(b"launcher")),
            ("pkg/__pycache__/a.cpython-312.pyc", "", ""),
        ]
    )


def test_build_leaves_its_arguments_as_they_were() -> None:
    installed = {"a": "b"}
    record.build([("a", "", "")], installed, [], [], bytes)
    assert installed == {"a": "b"}


def test_write_is_csv_with_crlf_and_replaces_a_link(tmp_path: Path) -> None:
    stored = tmp_path / "stored"
    stored.write_bytes(b"from the store")
    target = tmp_path / "RECORD"
    target.hardlink_to(stored)
    record.write(str(target), [("a,b.py", "sha256=x", "1"), ("c.py", "", "")])
    assert target.read_bytes() == b'"a,b.py",sha256=x,1\r\nc.py,,\r\n'
    assert stored.read_bytes() == b"from the store"
