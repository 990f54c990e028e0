"""Output encoding, routing and destinations: how notices, tasks and dead
letters become Kafka records (topic role, key, JSON bytes), which partition
a key belongs to and how notice intents travel (`sinks.routing`), and where
replay writes them. Imports only `schemas`."""

from sinks.codec import MAX_RECORD_BYTES, OutputRecord, OutputTopic, encode, encode_jsonl_line, fits
from sinks.destinations import Destination, JsonlDestination, ListDestination
from sinks.routing import intent_records, partition_of

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
    "intent_records",
    "partition_of",
]
