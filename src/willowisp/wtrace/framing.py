"""File header and chunk framing of ``.wtrace`` v1, and the chunk codecs.

A file is a 16-byte header followed by self-delimiting chunks. Each chunk has a 20-byte
header (magic, codec, stored and raw lengths, CRC-32 of the *uncompressed* payload), so a
reader can verify a chunk whatever compressor wrote it, skip one it cannot verify, and stop
cleanly at a chunk a killed writer left half written. The layout is in ``docs/format.md``.

Only the standard library is needed here (zstandard when importable): the Python agent,
which writes through this module, runs inside programs whose interpreter may not have our
dependencies.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR

FILE_MAGIC = b"WTRACE"
FILE_HEADER_SIZE = 16
CHUNK_MAGIC = b"WCHK"
CHUNK_HEADER_SIZE = 20
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # bound on both stored and raw payload sizes

CODEC_NONE = 0
CODEC_DEFLATE = 1  # zlib-wrapped deflate (RFC 1950)
CODEC_ZSTD = 2
CODEC_NAMES = {CODEC_NONE: "none", CODEC_DEFLATE: "deflate", CODEC_ZSTD: "zstd"}

_CHUNK_HEADER = struct.Struct("<4sBBHIII")

_zstd: Any
try:  # optional: the agent may run under an interpreter without it
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the interpreter
    _zstd = None


def zstd_available() -> bool:
    return _zstd is not None


def default_codec() -> int:
    return CODEC_ZSTD if _zstd is not None else CODEC_DEFLATE


def file_header(major: int = FORMAT_MAJOR, minor: int = FORMAT_MINOR) -> bytes:
    """The 16 bytes every file starts with: magic, major, minor, 8 reserved zero bytes."""
    return FILE_MAGIC + bytes((major, minor)) + bytes(8)


def parse_file_header(data: bytes) -> tuple[int, int]:
    """(major, minor) of a file header; TraceFormatError if it is not one."""
    if len(data) < FILE_HEADER_SIZE or data[:6] != FILE_MAGIC:
        seen = data[:6]
        raise TraceFormatError(
            f"not a .wtrace file (starts with {seen!r}, expected {FILE_MAGIC!r})"
        )
    return data[6], data[7]


class _Compressors:
    """Per-thread reusable compressor objects (creating a zstd context costs ~50 µs)."""

    def __init__(self) -> None:
        self._zc: Any = _zstd.ZstdCompressor(level=3) if _zstd is not None else None

    def compress(self, codec: int, payload: bytes) -> bytes:
        if codec == CODEC_NONE:
            return payload
        if codec == CODEC_DEFLATE:
            return zlib.compress(payload, 1)
        if codec == CODEC_ZSTD:
            if self._zc is None:
                raise ValueError("zstd codec requested but the zstandard module is not installed")
            return bytes(self._zc.compress(payload))
        raise ValueError(f"unknown codec {codec}")


def frame_chunk(payload: bytes, codec: int, compressors: _Compressors | None = None) -> bytes:
    """A whole chunk (header + stored payload) for an uncompressed payload."""
    if len(payload) > MAX_CHUNK_BYTES:
        raise ValueError(f"chunk payload of {len(payload)} bytes is over {MAX_CHUNK_BYTES}")
    stored = (compressors or _Compressors()).compress(codec, payload)
    if codec != CODEC_NONE and len(stored) >= len(payload):
        codec, stored = CODEC_NONE, payload  # incompressible: store as is
    header = _CHUNK_HEADER.pack(
        CHUNK_MAGIC, codec, 0, 0, len(stored), len(payload), zlib.crc32(payload)
    )
    return header + stored


Compressors = _Compressors


class ChunkHeader:
    """A parsed chunk header. ``offset`` is where the chunk starts in its file."""

    __slots__ = ("codec", "crc", "offset", "raw_len", "stored_len")

    def __init__(self, offset: int, codec: int, stored_len: int, raw_len: int, crc: int) -> None:
        self.offset = offset
        self.codec = codec
        self.stored_len = stored_len
        self.raw_len = raw_len
        self.crc = crc


def parse_chunk_header(data: bytes | memoryview, offset: int) -> ChunkHeader:
    """Parse the header at ``offset``; TraceFormatError if it is not a plausible one."""
    magic, codec, r1, r2, stored_len, raw_len, crc = _CHUNK_HEADER.unpack_from(data, offset)
    if magic != CHUNK_MAGIC:
        raise TraceFormatError(f"bad chunk magic {bytes(magic)!r}")
    if codec not in CODEC_NAMES:
        raise TraceFormatError(f"unknown codec byte {codec}")
    if r1 or r2:
        raise TraceFormatError("reserved chunk header bytes are not zero")
    if stored_len > MAX_CHUNK_BYTES or raw_len > MAX_CHUNK_BYTES:
        raise TraceLimitError(
            f"chunk sizes {stored_len}/{raw_len} are over the {MAX_CHUNK_BYTES}-byte bound"
        )
    if codec == CODEC_NONE and stored_len != raw_len:
        raise TraceFormatError(f"uncompressed chunk with stored {stored_len} != raw {raw_len}")
    return ChunkHeader(offset, codec, stored_len, raw_len, crc)


def unpack_payload(header: ChunkHeader, stored: bytes | memoryview) -> bytes:
    """Decompress and verify a chunk's payload. Raises TraceFormatError on any mismatch."""
    codec = header.codec
    data = bytes(stored)
    try:
        if codec == CODEC_NONE:
            raw = data
        elif codec == CODEC_DEFLATE:
            d = zlib.decompressobj()
            # max_length 0 means "unbounded" to zlib: ask for one byte more than declared,
            # so an oversized stream is caught by the length check below, never inflated.
            raw = d.decompress(data, header.raw_len + 1)
            if d.unconsumed_tail or d.unused_data or not d.eof:
                raise TraceFormatError(
                    "deflate stream does not fill exactly its stored bytes and declared size"
                )
        else:
            if _zstd is None:
                raise TraceFormatError(
                    "chunk is zstd-compressed but the zstandard module is missing"
                )
            declared = _zstd.frame_content_size(data)
            if declared not in (-1, header.raw_len):
                raise TraceFormatError(
                    f"zstd frame declares {declared} bytes, header says {header.raw_len}"
                )
            if declared == -1:  # no size in the frame: the output buffer is the bound
                raw = _zstd.ZstdDecompressor().decompress(data, max_output_size=header.raw_len)
            else:  # the frame's own size (checked above) bounds what zstd produces
                dobj = _zstd.ZstdDecompressor().decompressobj()
                raw = dobj.decompress(data)
                if not dobj.eof or dobj.unused_data:
                    raise TraceFormatError("zstd frame does not fill exactly its stored bytes")
    except TraceFormatError:
        raise
    except Exception as exc:  # zlib.error, zstd.ZstdError: translate at the boundary
        raise TraceFormatError(f"{CODEC_NAMES[codec]} payload does not decompress: {exc}") from exc
    if len(raw) != header.raw_len:
        raise TraceFormatError(f"payload is {len(raw)} bytes, header says {header.raw_len}")
    crc = zlib.crc32(raw)
    if crc != header.crc:
        raise TraceFormatError(f"checksum 0x{crc:08x} != 0x{header.crc:08x}")
    return raw
