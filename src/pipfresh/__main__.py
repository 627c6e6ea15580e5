"""``python -m pipfresh`` and the ``pipfresh`` console script."""

from __future__ import annotations

import sys

from pipfresh.cli.main import main as _main


def main() -> None:
    sys.exit(_main())


if __name__ == "__main__":
    main()
