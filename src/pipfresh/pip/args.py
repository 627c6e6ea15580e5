"""Splitting a command line into pipfresh's few options and pip's own.

pipfresh is a drop-in for pip: everything it does not recognise goes to pip
untouched. It only needs to *see* a few of pip's options (``--cache-dir``,
``--no-cache-dir``, ``--report``, ``-q``) to decide what to add.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

# pipfresh's own options; removed before pip sees the line.
_OWN_VALUED = ("--python", "--summary-json")
_QUIET = re.compile(r"^-q+$")


@dataclass
class PipArgs:
    """A pip command line as pipfresh sees it."""

    args: list[str] = field(default_factory=list)
    python: str | None = None
    summary_json: str | None = None
    quiet: int = 0
    cache_dir: str | None = None
    no_cache_dir: bool = False
    report: str | None = None

    @property
    def user_cache_choice(self) -> str | None:
        """The cache option the user gave explicitly, if any: it wins over ours."""
        if self.no_cache_dir:
            return "--no-cache-dir"
        if self.cache_dir is not None:
            return "--cache-dir"
        return None


def split(argv: list[str]) -> PipArgs:
    """Take pipfresh's options out of ``argv`` and note the pip options that matter."""
    parsed = PipArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        if name in _OWN_VALUED:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is None:
                from pipfresh.errors import PipfreshError

                raise PipfreshError(f"{name} needs a value")
            if name == "--python":
                parsed.python = value
            else:
                parsed.summary_json = value
            i += 1 if eq else 2
            continue
        if _QUIET.match(token):
            parsed.quiet += len(token) - 1
        elif token == "--quiet":
            parsed.quiet += 1
        elif token == "--no-cache-dir":
            parsed.no_cache_dir = True
        elif name in ("--cache-dir", "--report"):
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if name == "--cache-dir":
                parsed.cache_dir = value
            else:
                parsed.report = value
            parsed.args.append(token)
            if not eq and value is not None:
                parsed.args.append(value)
                i += 1
            i += 1
            continue
        parsed.args.append(token)
        i += 1
    return parsed


def option_values(tokens: Sequence[str], names: Collection[str]) -> Iterator[str]:
    """Values of ``names`` in ``tokens``: ``-r F``, ``-rF``, ``--requirement=F``."""
    it = iter(tokens)
    for token in it:
        name, eq, value = token.partition("=")
        if name in names:
            if eq:
                yield value
            else:
                following = next(it, None)
                if following is not None:
                    yield following
        elif token[:2] in names and not token.startswith("--") and len(token) > 2:
            yield token[2:]
