"""Run ``pipfresh.testing.index.command.main`` for ``python -m``."""

from pipfresh.testing.index.command import main

if __name__ == "__main__":
    raise SystemExit(main())
