"""What pip's dry run downloaded, kept: a file is downloaded once, whatever the index sends.

pip's dry run downloads the wheels it reads metadata from (every one before pip 25,
which also fetches the rest at the end of resolving; later pips those without PEP 658
metadata) into a temporary ``pip-unpack-*`` directory it deletes on exit. An index
that sends no ``ETag`` and no ``max-age``/``Expires`` leaves nothing in pip's HTTP
cache (cachecontrol stores no such response), so ``pip wheel`` and the next dry run
downloaded it again. The dry run runs with an audit hook (``sys.addaudithook``: it only
watches) that hardlinks each file of such a directory aside when pip deletes it
(the ``shutil.rmtree`` event). A kept file is used only when its sha256 is the one
pip's report gives: pip checked it in this run (against its page, or by hashing its
own download).

A kept file whose sha256 its index page lists is content-addressed: it is written
into pip's HTTP cache under pip's key for its URL (``httpcache.write_response``) as
a response fresh for a year, as PyPI serves files, so ``pip wheel`` and later dry runs
read it there, and pip checks it against the page's hash each time. A file replaced
under its URL then fails that check: ``drop_replaced`` removes the entry, and pip
resolves again. A page that lists no hash vouches for nothing: such a file is used
for this run only.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

from packaging.utils import canonicalize_name

from pipfresh.cache import fs
from pipfresh.errors import LinkInCache
from pipfresh.pip import httpcache, invoke
from pipfresh.pip.report import Item
from pipfresh.resolve.pagelog import Listings

#: The header marking an entry pipfresh wrote; its value is the body's sha256.
KEPT_HEADER = "X-Pipfresh-Kept"
KEEP_FOR = 365 * 24 * 3600  # seconds a kept file is served fresh (PyPI: a year and more)

# Run pip with the hook: ``python -c BOOTSTRAP -m pip ARGS`` is ``python -m pip ARGS``
# (``-m pip`` stays in the command line, for ``ps``; runpy sets sys.argv[0] as -m does;
# sys.path[0] is dropped first, as pip's __main__ drops it, so nothing is imported from
# the working directory).
_BOOTSTRAP = """\
import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
if sys.argv[1:3] == ["-m", "pip"]:
    del sys.argv[1:3]
import os, runpy, shutil
def _keep(dest):
    kept = [0]
    def hook(event, args):
        if event != "shutil.rmtree" or not args:
            return
        try:
            top = os.fspath(args[0])
            if not os.path.basename(top).startswith("pip-unpack-"):
                return
            for entry in os.scandir(top):
                if entry.is_file(follow_symlinks=False):
                    kept[0] += 1
                    target = os.path.join(dest, "%d-%s" % (kept[0], entry.name))
                    try:
                        os.link(entry.path, target)
                    except OSError:
                        shutil.copyfile(entry.path, target)
        except Exception:
            pass
    return hook
sys.addaudithook(_keep({dest!r}))
del _keep
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""
_GOT = re.compile(r"\bGot\s+([0-9a-f]{64})\b")
_URL = re.compile(r"https?://[^\s#'\"<>]+")


class Capture:
    """A directory the dry run's downloads are linked into, for the length of a run."""

    def __init__(self) -> None:
        self.dir: Path | None = None

    def __enter__(self) -> Capture:
        self.dir = Path(tempfile.mkdtemp(prefix="pipfresh-kept-"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def hooked(self, pip: invoke.PipInvocation) -> invoke.PipInvocation:
        """``python -m pip ARGS`` run with the hook. pipfresh's own pip with ``--python``
        runs the target's pip in a process of its own, which the hook would not see:
        that runs as it is (and nothing is kept)."""
        argv = pip.program.argv
        if self.dir is None or list(argv[1:3]) != ["-m", "pip"] or "--python" in argv[3:4]:
            return pip
        hooked = (argv[0], "-c", _BOOTSTRAP.format(dest=str(self.dir)), *argv[1:])
        return replace(pip, program=replace(pip.program, argv=hooked))

    def matching(self, items: Iterable[Item], http_dir: Path) -> dict[str, Path]:
        """The kept files that are what the report resolved, of those pip's HTTP cache
        does not hold (it serves them, or asks again): sha256 -> file."""
        wanted = {
            i.filename: i.sha256
            for i in items
            if i.url.startswith(("http://", "https://")) and not _cached(http_dir, i.url)
        }
        found: dict[str, Path] = {}
        for path in sorted(self.dir.iterdir()) if self.dir is not None else ():
            sha256 = wanted.get(path.name.split("-", 1)[-1])
            if sha256 is not None and sha256 not in found and fs.sha256(path) == sha256:
                found[sha256] = path
        return found


def into_pip_cache(
    kept: Mapping[str, Path],
    items: Iterable[Item],
    http_dir: Path,
    pages: Sequence[str],
    fetch: Callable[[str], bytes | None],
) -> int:
    """Write each kept file its index page vouches for into pip's HTTP cache (unless an
    entry is there already); how many were written. ``pages`` are the pages the dry run
    read, ``fetch`` reads one pip's cache does not hold."""
    todo = [i for i in items if i.sha256 in kept and not _cached(http_dir, i.url)]
    if not todo:
        return 0
    projects = {str(canonicalize_name(i.name)) for i in todo}
    listed = Listings.of([p for p in pages if Listings.project_of(p) in projects], http_dir, fetch)
    written = 0
    for item in todo:
        if not listed.vouch_for(item):
            continue
        body = kept[item.sha256]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(body.stat().st_size),
            "Date": formatdate(time.time(), usegmt=True),
            "Cache-Control": f"max-age={KEEP_FOR}, immutable",
            KEPT_HEADER: item.sha256,
        }
        try:
            httpcache.write_response(http_dir, item.url.split("#", 1)[0], headers, body)
        except (OSError, LinkInCache):
            continue  # as pip does: a cache it cannot write is no error
        written += 1
    return written


def drop_replaced(http_dir: Path, log_text: str) -> list[str]:
    """Remove the kept entries pip found not matching their page (``Got <sha256>`` of a
    hash mismatch in its log): files replaced under their URL. Returns their URLs."""
    gots = set(_GOT.findall(log_text))
    dropped = []
    urls = (u.rstrip(":,;.)") for u in _URL.findall(log_text)) if gots else ()
    for url in dict.fromkeys(urls):
        try:
            entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, url))
            response = httpcache.read_entry(entry)
        except (OSError, ValueError, httpcache.CorruptEntry):
            continue
        if response.headers.get(KEPT_HEADER) in gots:
            httpcache.remove_entry(entry)
            dropped.append(url)
    return dropped


def _cached(http_dir: Path, url: str) -> bool:
    """Whether pip's HTTP cache has an entry for ``url`` (pip serves it, or asks again);
    a URL it could not key counts as cached: there is nothing to keep for it."""
    try:
        meta = httpcache.entry_path(http_dir, url)
    except ValueError:
        return True
    body = meta.with_name(meta.name + ".body") if http_dir.name == "http-v2" else meta
    return os.path.exists(meta) and os.path.exists(body)
