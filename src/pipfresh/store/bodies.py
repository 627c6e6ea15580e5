"""One form of each wheel: a downloaded wheel the store installed leaves pip's cache.

After the store installs a wheel the partition holds it twice: the body pip (or
pipfresh) downloaded into ``http-v2/``, and the store's entry unpacked from it, under
the same sha256. The body is read again only

- by pip installing the wheel itself (a run that the store cannot install);
- by a dry run that downloads the wheel to resolve: every pip before 25.3 does
  (``prepare_linked_requirements_more`` ran inside the resolver), and any pip does
  for a wheel whose PEP 658 ``.metadata`` it has not got (a direct URL, an index
  that serves none);
- by another partition's first run, seeding its cache from this one
  (``share.seed_from_siblings``): a wheel for any Python (``none``) or for the
  stable ABI (``abi3``) fits a sibling interpreter.

So a body is dropped when the run that installed it ends, only if none of these can
read it: the store installed it, the partition's pip is 25.3 or newer, the URL's
``.metadata`` entry is in the cache, and every tag of the wheel names this
interpreter's own ABI (``cp312``, ``cp313t``). The next run with the same command
downloads nothing (the tests count the requests). A run that pip installs itself
downloads these wheels once, and then keeps them; ``cache prune`` drops what is left
by its own rule (``rules.StoredBodies``).

The caller holds the partition alone (``session``), as a prune does: a run holding it
too might be reading a body. The entry's metadata file goes first, then its body, so
a run killed between the two leaves an orphaned body (which the next run's health
check removes), never metadata without its body.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from pipfresh.pip import httpcache
from pipfresh.pip.report import Item

#: The first pip whose ``install --dry-run`` downloads no wheel PEP 658 metadata resolved.
FIRST_PIP = Version("25.3")

_SHARED_ABIS = frozenset({"none", "abi3"})


@dataclass(frozen=True)
class InstalledBodies:
    """The bodies in ``http_dir`` of what the store installed, and which no run reads."""

    http_dir: Path
    pip_version: Version

    def droppable(self, item: Item) -> bool:
        """Whether no later run reads this wheel's body (see the module's rules)."""
        if self.pip_version < FIRST_PIP or self.http_dir.name != "http-v2":
            return False
        if not item.is_wheel or item.direct_url is not None:
            return False
        if not item.url.startswith(("http://", "https://")) or not _for_one_abi(item.filename):
            return False
        metadata = httpcache.entry_path(self.http_dir, item.url.split("#", 1)[0] + ".metadata")
        return metadata.is_file()

    def drop(self, items: Iterable[Item]) -> int:
        """Remove each droppable item's entry (metadata file, then body); the count removed."""
        dropped = 0
        for item in items:
            if not self.droppable(item):
                continue
            meta = httpcache.entry_path(self.http_dir, item.url)
            removed = False
            for path in (meta, meta.with_name(meta.name + ".body")):
                try:
                    os.unlink(path)
                    removed = True
                except FileNotFoundError:
                    pass
                except OSError:
                    break  # read-only, or not ours: the next prune says so
            dropped += removed
        return dropped


def _for_one_abi(filename: str) -> bool:
    """Whether every tag of the wheel names one interpreter ABI (no sibling can use it)."""
    try:
        _name, _version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    return bool(tags) and all(tag.abi not in _SHARED_ABIS for tag in tags)


__all__ = ["FIRST_PIP", "InstalledBodies"]
