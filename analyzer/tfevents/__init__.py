"""TensorBoard event files (TFRecord framing around `Event` protos): the one reader and the one writer.

Why one package shared by all three tools: the analyzer reads event files, while the reference
trainer, `offrl-eval` and the benchmarks write them. Reader and writer share the CRC32C framing
(`crc`), so a file the project writes is checked by the same code that reads it, and neither side
imports the other's private names. Dependencies: numpy and crc32c only (protobuf is imported by
the reader lazily, for records the vectorised path does not decode).

    from analyzer.tfevents import EventWriter, read_event_file
"""

from __future__ import annotations

from analyzer.tfevents.crc import masked_crc32c
from analyzer.tfevents.reader import EventFileData, EventStream, TagData, read_event_file
from analyzer.tfevents.writer import EventWriter, encode_record, scalar_event_bytes

__all__ = [
    "EventFileData",
    "EventStream",
    "EventWriter",
    "TagData",
    "encode_record",
    "masked_crc32c",
    "read_event_file",
    "scalar_event_bytes",
]
