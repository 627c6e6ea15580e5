"""Requirement files as pip reads them: logical lines, and the files they include.

``pip wheel`` needs the index options of the user's files (``obtain``) and the store
needs their ``--hash`` pins (``hashpins``): both walk the files here, the way
pip's ``req_file`` does (continuations joined, comments dropped, a nested
``-r``/``-c`` relative to the file that names it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipfresh.pip import options
from pipfresh.pip.args import option_values

REQUIREMENTS = options.spellings("-r")
CONSTRAINTS = options.spellings("-c")
ALL = REQUIREMENTS | CONSTRAINTS
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's COMMENT_RE
_URL = re.compile(r"^(http|https|file):", re.I)  # pip's SCHEME_RE


@dataclass(frozen=True)
class Line:
    """One logical line of a requirement file, without its comment."""

    file: Path
    text: str

    @property
    def is_option(self) -> bool:
        return self.text.startswith("-")

    def split(self) -> tuple[str, list[str]]:
        """The requirement and its options, as pip's ``break_args_options`` splits them
        (options are shell words; a line that does not split has none)."""
        tokens = self.text.split(" ")
        first = next((n for n, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        try:
            options = shlex.split(" ".join(tokens[first:]))
        except ValueError:
            options = []
        return " ".join(tokens[:first]).strip(), options


@dataclass
class Walk:
    """Every line of the files, in pip's order, and the sources pipfresh could not read
    (a URL, an unreadable file): what they hold is unknown."""

    lines: list[Line] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def walk(names: Iterable[str], follow: Collection[str] = REQUIREMENTS) -> Walk:
    """The lines of the files ``names``, with the files they include by an option in
    ``follow`` (``-r`` by default; add ``CONSTRAINTS`` for constraint files), once each."""
    out = Walk()
    seen: set[Path] = set()
    for name in names:
        _read(name, follow, seen, out)
    return out


def is_url(name: str) -> bool:
    """Whether pip fetches ``name`` rather than opening it (``http:``, ``https:``, ``file:``)."""
    return _URL.match(name) is not None


def _read(name: str, follow: Collection[str], seen: set[Path], out: Walk) -> None:
    if is_url(name):
        out.unread.append(name)
        return
    path = Path(name)
    try:
        real = path.resolve()
        if real in seen:
            return
        seen.add(real)
        text = real.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        out.unread.append(name)  # pip reports it itself
        return
    for text_line in _logical_lines(text):
        line = Line(real, text_line)
        out.lines.append(line)
        if not line.is_option:
            continue
        _, words = line.split()
        for included in option_values(words, follow):
            nested = included if is_url(included) else str(path.parent / included)
            _read(nested, follow, seen, out)


def _logical_lines(text: str) -> list[str]:
    """pip's ``join_lines`` then ``ignore_comments``: a line ending in a backslash
    continues on the next one (unless it is a comment), comments are dropped."""
    lines: list[str] = []
    pending: list[str] = []
    for raw in text.splitlines():
        if raw.endswith("\\") and not _COMMENT.match(raw):
            pending.append(raw.strip("\\"))
            continue
        if _COMMENT.match(raw):
            raw = " " + raw
        lines.append("".join([*pending, raw]))
        pending = []
    if pending:
        lines.append("".join(pending))
    stripped = (_COMMENT.sub("", line).strip() for line in lines)
    return [line for line in stripped if line]
