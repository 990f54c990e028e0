"""Output encoding and destinations: how notices, tasks and dead letters
become Kafka records (topic role, key, JSON bytes) and where replay writes them.
Imports only `schemas`."""

from sinks.codec import MAX_RECORD_BYTES, OutputRecord, OutputTopic, encode, encode_jsonl_line, fits
from sinks.destinations import Destination, JsonlDestination, ListDestination

__all__ = [
    "MAX_RECORD_BYTES",
    "Destination",
    "JsonlDestination",
    "ListDestination",
    "OutputRecord",
    "OutputTopic",
    "encode",
    "encode_jsonl_line",
    "fits",
]
