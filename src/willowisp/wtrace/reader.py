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
from collections.abc import Iterator
from dataclasses import dataclass, field

from willowisp.errors import TraceFormatError, TraceVersionError
from willowisp.model.spec import FORMAT_MAJOR
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    FILE_HEADER_SIZE,
    ChunkHeader,
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
    tf = read_header(data, path)
    tf.chunks = list(iter_chunks(data, tf))
    require_a_chunk(tf, len(tf.chunks))
    return tf


def read_header(data: bytes, path: str = "<bytes>") -> TraceFile:
    """The file's TraceFile, with no chunks yet (:func:`iter_chunks` reads them). Raises
    TraceFormatError for a file that is not a ``.wtrace`` or not of a major version this
    reader reads."""
    major, minor = parse_file_header(data)
    if major > FORMAT_MAJOR:
        raise TraceVersionError(
            f"written by a newer Willowisp (format {major}.{minor}); this reader reads "
            f"format {FORMAT_MAJOR}.x — upgrade willowisp"
        )
    if major < 1:
        raise TraceFormatError(f"format version {major}.{minor} does not exist")
    return TraceFile(path=path, major=major, minor=minor, size=len(data))


def require_a_chunk(tf: TraceFile, read: int) -> None:
    """Raise when none of the ``read`` chunks could be read but damage was found: the file
    has no data to keep (a bare header, with nothing after it, is a file just begun)."""
    if not read and (tf.truncated or tf.problems):
        what = tf.truncated or tf.problems[0]
        raise TraceFormatError(f"no complete chunk after the file header: {what}")


def iter_chunks(data: bytes, tf: TraceFile) -> Iterator[Chunk]:
    """Yield each readable chunk of ``data`` (a whole file) as soon as it is decoded, adding
    what was skipped to ``tf.problems`` / ``tf.truncated`` on the way.

    A generator, so a caller that lets each chunk go (or keeps only part of it) holds one
    decoded chunk at a time: a few kilobytes of zstd chunks decompress to gigabytes.
    It does not add to ``tf.chunks``; that is the caller's choice.
    """
    pos = FILE_HEADER_SIZE
    index = 0
    end = len(data)
    while pos < end:
        if end - pos < CHUNK_HEADER_SIZE:
            tf.truncated = f"ends inside a chunk header at byte {pos} (writer killed?)"
            return
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
                return
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
            return
        try:
            chunk = _decode_chunk(index, pos, header, memoryview(data)[body_start:body_end])
        except TraceFormatError as exc:
            tf.problems.append(f"chunk {index} at byte {pos}: {exc}")
            nxt = data.find(CHUNK_MAGIC, pos + 1)
            index += 1
            if nxt < 0:
                return
            pos = nxt
            continue
        index += 1
        pos = body_end
        yield chunk
        # Not held while the next chunk decodes: the caller may have let it go.
        del chunk


def _decode_chunk(index: int, pos: int, header: ChunkHeader, stored: memoryview) -> Chunk:
    # A function of its own so the decompressed payload is freed on return, not kept in
    # the generator's frame while the caller works on the chunk.
    records, events = decode_payload(unpack_payload(header, stored))
    return Chunk(index, pos, records, events)


def read_file(path: str | os.PathLike[str]) -> TraceFile:
    """Read one file. OSError and TraceFormatError carry the problem; the CLI names the file."""
    p = os.fspath(path)
    return read_bytes(load_file(p), p)


def load_file(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes, for :func:`read_bytes` or :func:`iter_chunks`; over the file bound it
    raises TraceFormatError without reading it."""
    p = os.fspath(path)
    size = os.path.getsize(p)
    if size > MAX_FILE_BYTES:
        raise TraceFormatError(f"{size} bytes is over the {MAX_FILE_BYTES}-byte file bound")
    with open(p, "rb") as f:
        return f.read()


def is_wtrace(path: str | os.PathLike[str]) -> bool:
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read(6) == b"WTRACE"
    except OSError:
        return False
