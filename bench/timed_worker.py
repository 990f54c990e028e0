"""`forewarn worker` timed from inside (`bench.timing`): W in
`bench.compare`. Benchmark-only: nothing in the product imports it.

    BENCH_TIMES_FILE=times.json python -m bench.timed_worker worker
"""

from __future__ import annotations

import sys

from bench import timing
from stream import cli

if __name__ == "__main__":
    timing.install()
    sys.exit(cli.main())
