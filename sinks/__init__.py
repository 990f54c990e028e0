"""Output encoding and destinations: how notices, tasks and dead letters
become Kafka records (topic role, key, JSON bytes) and where replay writes them.
Imports only `schemas`."""

from sinks.codec import OutputRecord, OutputTopic, encode, encode_jsonl_line
from sinks.destinations import Destination, JsonlDestination, ListDestination

__all__ = [
    "Destination",
    "JsonlDestination",
    "ListDestination",
    "OutputRecord",
    "OutputTopic",
    "encode",
    "encode_jsonl_line",
]
