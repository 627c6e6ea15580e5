"""What a run says while it runs, as an interface the CLI implements (``cli.render.Console``).

The data path (the session, the store's fast path, the dry run, ``pip wheel``) never
writes to the terminal itself: it hands each line, and the pip output it relays, to a
``Console``. The CLI is then the one place that prints, and a line said before pip
starts (a lock wait, a repair) still comes before pip's own output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipfresh.cli.progress import Progress
    from pipfresh.pip.config import PipConfig


class Console(Protocol):
    """Where a run speaks: each call prints at once, in the order made."""

    quiet: bool  # ``-q``: no notes, no progress, no pip install lines of ours

    def note(self, text: str) -> None:
        """A remark about the run (``pipfresh: <text>`` on stderr); silenced by ``-q``."""

    def warning(self, text: str) -> None:
        """Something the user must know even with ``-q``."""

    def waiting(self, partition: str) -> None:
        """Another pipfresh holds ``partition``: this run waits for it."""

    def progress(
        self,
        pip_args: list[str],
        env: Mapping[str, str],
        prefix: str,
        config: PipConfig | None = None,
    ) -> Progress:
        """The store installer's phases, drawn as pip draws its own."""

    def line(self, text: str) -> None:
        """A line on stdout as pip prints its own (``Installing collected packages``)."""

    def relay(self, data: bytes, *, err: bool = False) -> None:
        """pip's own output, passed through byte for byte (stdout, or stderr)."""
