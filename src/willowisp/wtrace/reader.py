"""Reading ``.wtrace`` files, chunk by chunk, keeping every good chunk.

The reader never gives up on a whole file because part of it is bad: a chunk whose
checksum fails is skipped and the reader looks for the next chunk magic; a half-written
last chunk (the writer was killed) ends the file. What was skipped is reported in
``TraceFile.problems`` / ``TraceFile.truncated`` so callers can say so in one line.
Only a file that is not a ``.wtrace`` at all, is of a newer major version, or holds bytes
after its header of which not one chunk is readable (cut inside its first chunk, or
nothing but damage) raises: such a file has no data to keep, and an empty TraceFile would
let it pass for a process that had only just begun (a bare 16-byte header, which is one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from willowisp.errors import TraceFormatError, TraceVersionError
from willowisp.model.spec import FORMAT_MAJOR
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    FILE_HEADER_SIZE,
    parse_chunk_header,
    parse_file_header,
    unpack_payload,
)
from willowisp.wtrace.payload import DecodedEvents, Record, decode_payload

MAX_FILE_BYTES = 8 * 1024**3


@dataclass(slots=True)
class Chunk:
    index: int
    offset: int
    records: list[Record]
    events: DecodedEvents | None


@dataclass(slots=True)
class TraceFile:
    path: str
    major: int
    minor: int
    chunks: list[Chunk] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # corrupt chunks skipped
    truncated: str = ""  # non-empty: the file ends inside a chunk (writer killed?)
    size: int = 0

    @property
    def events(self) -> int:
        return sum(len(c.events) for c in self.chunks if c.events is not None)


def read_bytes(data: bytes, path: str = "<bytes>") -> TraceFile:
    """Parse a whole file held in memory. Raises only TraceFormatError and subclasses:
    for a file that is not a ``.wtrace``, of a newer major version, or with bytes after
    its header but no readable chunk."""
    major, minor = parse_file_header(data)
    if major > FORMAT_MAJOR:
        raise TraceVersionError(
            f"written by a newer Willowisp (format {major}.{minor}); this reader reads "
            f"format {FORMAT_MAJOR}.x — upgrade willowisp"
        )
    if major < 1:
        raise TraceFormatError(f"format version {major}.{minor} does not exist")
    tf = TraceFile(path=path, major=major, minor=minor, size=len(data))
    pos = FILE_HEADER_SIZE
    index = 0
    end = len(data)
    while pos < end:
        if end - pos < CHUNK_HEADER_SIZE:
            tf.truncated = f"ends inside a chunk header at byte {pos} (writer killed?)"
            break
        try:
            header = parse_chunk_header(data, pos)
        except TraceFormatError as exc:
            nxt = data.find(CHUNK_MAGIC, pos + 1)
            tf.problems.append(
                f"chunk {index} at byte {pos}: {exc}; skipped to "
                + (f"byte {nxt}" if nxt >= 0 else "the end")
            )
            index += 1
            if nxt < 0:
                break
            pos = nxt
            continue
        body_start = pos + CHUNK_HEADER_SIZE
        body_end = body_start + header.stored_len
        if body_end > end:
            nxt = data.find(CHUNK_MAGIC, pos + 1)
            if nxt >= 0:  # not the tail: a corrupt length in the middle of the file
                tf.problems.append(
                    f"chunk {index} at byte {pos}: stored length "
                    f"{header.stored_len} runs past the end; skipped to byte {nxt}"
                )
                index += 1
                pos = nxt
                continue
            tf.truncated = (
                f"chunk {index} at byte {pos} needs {header.stored_len} bytes, "
                f"{end - body_start} left (writer killed?)"
            )
            break
        try:
            raw = unpack_payload(header, memoryview(data)[body_start:body_end])
            records, events = decode_payload(raw)
        except TraceFormatError as exc:
            tf.problems.append(f"chunk {index} at byte {pos}: {exc}")
            nxt = data.find(CHUNK_MAGIC, pos + 1)
            index += 1
            if nxt < 0:
                break
            pos = nxt
            continue
        tf.chunks.append(Chunk(index, pos, records, events))
        index += 1
        pos = body_end
    if not tf.chunks and (tf.truncated or tf.problems):
        what = tf.truncated or tf.problems[0]
        raise TraceFormatError(f"no complete chunk after the file header: {what}")
    return tf


def read_file(path: str | os.PathLike[str]) -> TraceFile:
    """Read one file. OSError and TraceFormatError carry the problem; the CLI names the file."""
    p = os.fspath(path)
    size = os.path.getsize(p)
    if size > MAX_FILE_BYTES:
        raise TraceFormatError(f"{size} bytes is over the {MAX_FILE_BYTES}-byte file bound")
    with open(p, "rb") as f:
        data = f.read()
    return read_bytes(data, p)


def is_wtrace(path: str | os.PathLike[str]) -> bool:
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read(6) == b"WTRACE"
    except OSError:
        return False
