"""Destinations that take encoded output records: a JSONL file (replay) and an
in-memory list (tests and `forewarn rules test`). The worker's Kafka
destination lives in `stream`, which owns the Kafka clients."""

from __future__ import annotations

from typing import Protocol, TextIO

from sinks.codec import OutputRecord, encode_jsonl_line


class Destination(Protocol):
    def write(self, record: OutputRecord) -> None: ...


class JsonlDestination:
    """Writes one `{"topic","key","value"}` line per record."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.count = 0

    def write(self, record: OutputRecord) -> None:
        self._stream.write(encode_jsonl_line(record))
        self._stream.write("\n")
        self.count += 1


class ListDestination:
    """Keeps records in memory, in order."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def write(self, record: OutputRecord) -> None:
        self.records.append(record)
