"""Run ``pipfresh.testing.index.core.main`` for ``python -m``."""

from pipfresh.testing.index.core import main

if __name__ == "__main__":
    raise SystemExit(main())
