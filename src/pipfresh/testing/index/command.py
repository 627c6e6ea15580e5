"""``python -m pipfresh.testing.index DIR``: serve a directory by hand, for
benchmarks and for pointing a real pip at.

It prints the index URL on stdout once serving, and a summary of what was
served on stderr when stopped.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pipfresh.testing.index.core import PackageIndex

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a directory of distributions until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipfresh.testing.index",
        description="Serve DIR as a PyPI-like simple index on a loopback port.",
    )
    parser.add_argument("dir", type=Path, help="flat directory of wheels and sdists")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per response")
    parser.add_argument("--max-age", type=int, default=600, help="Cache-Control max-age of pages")
    parser.add_argument("--no-gzip", action="store_true", help="never gzip pages")
    parser.add_argument("--log", action="store_true", help="print each request on stderr")
    args = parser.parse_args(argv)

    index = PackageIndex(
        args.dir,
        latency=args.latency,
        bandwidth=args.bandwidth,
        page_max_age=args.max_age,
        gzip_pages=not args.no_gzip,
        host=args.host,
        port=args.port,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    index.start()
    print(index.index_url, flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            if args.log:
                records = index.counters().records
                for r in records[seen:]:
                    line = f"{r.method} {r.path} {r.status} {r.bytes_sent} {r.kind}"
                    print(line, file=sys.stderr)
                seen = len(records)
    except KeyboardInterrupt:
        pass
    finally:
        index.stop()
    c = index.counters()
    print(
        f"served {c.total_requests} requests, {c.total_bytes} bytes "
        f"(index 200/304: {c.index_200}/{c.index_304}, files: {c.file_requests} "
        f"= {c.file_bytes} bytes, metadata: {c.metadata_requests})",
        file=sys.stderr,
    )
    return 0
