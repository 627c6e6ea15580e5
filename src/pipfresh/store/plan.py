"""An entry's install worked out once (by installer), saved beside it, replayed by every install."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import installer
from installer.exceptions import InstallerError
from installer.records import InvalidRecordEntry

from pipfresh.cache import fs
from pipfresh.errors import InstallError
from pipfresh.layout import PLAN_FILE
from pipfresh.store import wheelcheck
from pipfresh.store.destination import Recorder, entry_point_names
from pipfresh.store.entries import Entry
from pipfresh.store.source import StoreSource


@dataclass(frozen=True)
class Plan:
    """An entry's install, worked out once by ``installer`` and replayed by every install.

    Nothing in it depends on the target: scheme names and paths inside each
    scheme, the directories to make, the bytecode beside each module, the
    scripts whose ``#!python`` line is rewritten, the launchers to write and
    the wheel's own RECORD rows.
    """

    root: str  # purelib or platlib: RECORD paths are relative to it
    dist_info: str
    # scheme, path in the scheme, archive path, pyc archive path ("" for none), #!python fix
    files: list[tuple[str, str, str, str, bool]]
    dirs: dict[str, list[str]]  # scheme -> directories to make, parents first ("" is the base)
    scripts: list[tuple[str, str, str, str]]  # entry-point launchers: name, module, attr, kind
    record: list[tuple[str, str, str]]  # the wheel's RECORD rows

    @classmethod
    def load(cls, entry: Entry) -> Plan | None:
        try:
            data = json.loads(Path(entry.path, PLAN_FILE).read_text(encoding="utf-8"))
            if data.get("sha256") != entry.sha256:
                return None
            plan = cls(
                root=str(data["root"]),
                dist_info=str(data["dist_info"]),
                files=[(a, b, c, d, bool(e)) for a, b, c, d, e in data["files"]],
                dirs={str(k): list(v) for k, v in data["dirs"].items()},
                scripts=[(a, b, c, d) for a, b, c, d in data["scripts"]],
                record=[(a, b, c) for a, b, c in data["record"]],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        # Made by ``make``, which checks every path; checked again, cheaply, before trusting it.
        paths = [f[1] for f in plan.files] + [s[0] for s in plan.scripts] + [plan.dist_info]
        paths += [d for dirs in plan.dirs.values() for d in dirs if d]
        return None if any(map(_escapes, paths)) else plan

    @classmethod
    def make(cls, entry: Entry) -> Plan:
        """Check the entry as pip checks a wheel, ask ``installer`` where every file goes,
        check every path stays in its scheme. ``UnsupportedWheel``: only pip may install it."""
        _check_entry(entry)
        source = StoreSource(entry)
        recorder = Recorder(entry_point_names(source))
        try:
            installer.install(source, recorder, {})
        except (InstallerError, InvalidRecordEntry) as exc:
            reason = exc.args[-1] if exc.args else exc
            raise wheelcheck.UnsupportedWheel(f"{entry.wheel_name}: {reason}") from None
        files = []
        dirs: dict[str, set[str]] = {}
        for name, *_rest in recorder.scripts:
            if _escapes(name) or "/" in name:
                raise InstallError(f"{entry.wheel_name}: entry point {name!r} escapes scripts")
        for scheme, path, archive, _exec in recorder.files:
            parts = path.split("/")
            if _escapes(path):
                raise InstallError(f"{entry.wheel_name}: {path} escapes {scheme}")
            parent = "/".join(parts[:-1])
            made = dirs.setdefault(scheme, {""})
            for i in range(1, len(parts)):
                made.add("/".join(parts[:i]))
            pyc = entry.pyc.get(archive, "")
            if pyc:
                made.add(f"{parent}/__pycache__" if parent else "__pycache__")
            fix = scheme == "scripts" and _starts_with(entry.file(archive), b"#!python")
            files.append((scheme, path, archive, pyc, fix))
        ordered = {k: sorted(v, key=lambda d: (d.count("/"), d)) for k, v in dirs.items()}
        return cls(
            root=recorder.root,
            dist_info=source.dist_info_dir,
            files=files,
            dirs=ordered,
            scripts=recorder.scripts,
            record=source.record_rows(),
        )

    def save(self, entry: Entry) -> None:
        """Kept beside the entry (written whole, then renamed): the next install reads it.

        Written first as the store's ``.tmp-*`` staging, not inside the entry: what a
        killed run leaves there is removed with the store's other staging (the next
        run alone, or a prune); inside an entry, nothing would ever remove it.
        """
        data = {"sha256": entry.sha256, **dataclasses.asdict(self)}
        final = Path(entry.path, PLAN_FILE)
        tid = threading.get_ident()
        tmp = final.parent.with_name(f".tmp-plan-{entry.sha256[:16]}-{os.getpid()}-{tid}")
        try:
            fs.write_atomic(final, json.dumps(data), tmp=tmp)
        except OSError:
            pass  # a read-only store: plan again next time


def _check_entry(entry: Entry) -> None:
    """``wheelcheck`` on a stored wheel (entries stored before it existed included)."""
    bytecode = set(entry.pyc.values())
    names = [rel for rel in entry.files if rel not in bytecode]

    def read(rel: str) -> bytes:
        if rel not in entry.files:
            raise KeyError(rel)
        return Path(entry.file(rel)).read_bytes()

    wheelcheck.check(entry.wheel_name, names, read)


def plans(entries: Mapping[str, Entry]) -> dict[str, Plan]:
    """Each entry's plan (made in parallel where missing), before anything is installed:
    an entry only pip may install raises ``UnsupportedWheel`` while the target is intact."""
    keys = list(entries)
    if not keys:
        return {}
    try:
        with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
            return dict(zip(keys, pool.map(plan_for, (entries[k] for k in keys))))
    except (OSError, ValueError) as exc:
        raise InstallError(f"planning the install failed: {exc}") from None


def _escapes(path: str) -> bool:
    """Whether a path inside a scheme could reach outside it (or is not a plain path)."""
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or "." in parts or "" in parts


def plan_for(entry: Entry) -> Plan:
    """The entry's saved plan, or a new one (saved)."""
    plan = Plan.load(entry)
    if plan is None:
        plan = Plan.make(entry)
        plan.save(entry)
    return plan


def _starts_with(path: str, prefix: bytes) -> bool:
    with open(path, "rb") as fp:
        return fp.read(len(prefix)) == prefix
