"""Writing ``.wtrace`` files: one chunk per call, each with a single ``write(2)``.

A chunk goes to the file in one system call on an ``O_APPEND`` descriptor, so a process
killed at any moment leaves every earlier chunk intact and at most one partial chunk at the
end, which readers detect and skip. No buffering in Python: once ``write_chunk`` returns the
bytes are in the kernel and survive the death of the process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from willowisp.wtrace.framing import Compressors, default_codec, file_header, frame_chunk
from willowisp.wtrace.payload import EventBatch, PackedEvents, Record, encode_payload


def encode_chunk(
    records: Sequence[Record],
    events: EventBatch | PackedEvents | None,
    codec: int,
    compressors: Compressors | None = None,
) -> bytes:
    """A complete framed chunk."""
    return frame_chunk(encode_payload(records, events), codec, compressors)


EMBED_PIECE = 16 * 1024 * 1024  # well under the 64 MiB chunk bound, even before compression
R_EMBEDDED = 7


def embedded_records(stream: int, fmt: str, data: bytes) -> list[Record]:
    """The records of one embedded stream, one per chunk: ``data`` cut into pieces."""
    view = memoryview(data)
    starts = range(0, max(len(data), 1), EMBED_PIECE)
    return [
        Record(
            R_EMBEDDED,
            stream,
            (
                ("format", fmt),
                ("data", bytes(view[i : i + EMBED_PIECE])),
                ("more", 1 if i + EMBED_PIECE < len(data) else 0),
            ),
        )
        for i in starts
    ]


class SegmentWriter:
    """Appends chunks to one segment file. Not thread-safe: one flusher owns it."""

    def __init__(self, path: str | os.PathLike[str], codec: int | None = None) -> None:
        self.path = os.fspath(path)
        self.codec = default_codec() if codec is None else codec
        self._compressors = Compressors()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self._fd).st_size
        if self.size == 0:
            try:
                self._write(file_header())
            except OSError:
                self.close()
                raise

    def _write(self, data: bytes) -> None:
        """Append all of ``data`` or nothing: a write that fails part-way (a full disk) is
        cut off again, so the file still ends at a chunk boundary and a later chunk, once
        there is room, follows the last whole one."""
        start = self.size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError:
            if self.size != start:
                try:
                    os.ftruncate(self._fd, start)
                    self.size = start
                except OSError:
                    pass  # the reader resynchronises on the next chunk's magic
            raise

    def write_chunk(
        self, records: Sequence[Record], events: EventBatch | PackedEvents | None = None
    ) -> int:
        """Encode and append one chunk; returns its size on disk."""
        data = encode_chunk(records, events, self.codec, self._compressors)
        self._write(data)
        return len(data)

    def write_embedded(self, stream: int, fmt: str, data: bytes) -> int:
        """Append foreign data as one ``embedded`` stream (docs/format.md, record 7):
        pieces of at most ``EMBED_PIECE`` bytes, one chunk each. Returns bytes written."""
        return sum(self.write_chunk([r]) for r in embedded_records(stream, fmt, data))

    def write_raw_chunk(self, chunk: bytes) -> None:
        self._write(chunk)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_file(
    path: str | os.PathLike[str],
    chunks: Sequence[tuple[Sequence[Record], EventBatch | None]],
    codec: int | None = None,
) -> None:
    """Write a whole file at once (tests, importers)."""
    with SegmentWriter(path, codec) as w:
        for records, events in chunks:
            w.write_chunk(records, events)
