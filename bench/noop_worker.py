"""`forewarn worker` with a no-op processor: W0 in `bench.compare`.

Everything the worker does around the processor runs as in production
(Faust's consumers and agents, the store reads, the checkpoints, the
commits, the supervisor); only `Processor`'s per-record work is replaced
by counting the record's events, so the figure is the ceiling the worker's
plumbing sets: the time the real processor adds is W0's per-event time
subtracted from W's. Benchmark-only: nothing in the product imports it.

    python -m bench.noop_worker worker
"""

from __future__ import annotations

import sys

from bench import timing
from stream import cli
from stream.decoding import RawRecord
from stream.processor import Outcome, Processor


def count_only(processor: Processor, raw: RawRecord, work: timing.Work) -> Outcome:
    """Count the record's events as the processor does (a batch counts
    each; simulated events carry one `event_id` each) and do nothing else."""
    value = raw.value or b""
    events = value.count(b'"event_id"') if value[:1] == b"[" else 1
    processor.consumed_of(raw.topic).inc(max(events, 1))
    return Outcome()


if __name__ == "__main__":
    timing.wrap_processors(count_only)  # the worker's processor does nothing but count
    timing.install()  # timed from inside as W is (`bench.timing`)
    sys.exit(cli.main())
