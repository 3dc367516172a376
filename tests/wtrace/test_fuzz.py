"""Hostile input: the reader raises only TraceFormatError, stays bounded, keeps intact chunks."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.errors import TraceFormatError, TraceLimitError, TraceVersionError
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    CODEC_DEFLATE,
    CODEC_NONE,
    CODEC_ZSTD,
    FILE_HEADER_SIZE,
    file_header,
    parse_chunk_header,
)
from willowisp.wtrace.payload import EventBatch, Record, decode_payload, encode_payload, rows_of
from willowisp.wtrace.reader import TraceFile, read_bytes
from willowisp.wtrace.writer import encode_chunk

Row = tuple[int, int, int, int, int, int]
Content = tuple[tuple[Record, ...], int | None, tuple[Row, ...]]

MIB = 1 << 20
# A read of a small file may use a few MiB; anything near the 64 MiB chunk bound is a leak.
MEMORY_BOUND = 8 * MIB


def _batch(first_seq: int, rows: list[Row]) -> EventBatch:
    batch = EventBatch(first_seq=first_seq)
    for row in rows:
        batch.append(*row)
    return batch


def sample_chunks(n_events: int = 4) -> list[tuple[list[Record], EventBatch | None]]:
    """Three chunks with records, events (one delta escaped) and a sequence gap."""
    return [
        (
            [
                Record(2, 1, (("kind", "thread"), ("name", "main"))),
                Record(3, 1, (("kind", "lock"), ("blob", b"\x00\xff"))),
            ],
            _batch(1, [(10, 1, 1_000 + 10 * i, 1, -i, 2) for i in range(n_events)]),
        ),
        (
            [Record(6, 0, (("events", 2 * n_events), ("dropped", -1)))],
            _batch(100, [(11, 1, 9_000_000_000 + i, 1, 2**63 - 1, 0) for i in range(n_events)]),
        ),
        ([], _batch(200, [(3, 2, 2**40 - 5 * i, 0, 0, 0) for i in range(n_events)])),
    ]


def make_file(codec: int, n_events: int = 4) -> bytes:
    data = file_header() + b"".join(encode_chunk(r, e, codec) for r, e in sample_chunks(n_events))
    if codec != CODEC_NONE:
        assert all(data[o + 4] == codec for o in chunk_offsets(data)), "payload was not compressed"
    return data


def chunk_offsets(data: bytes) -> list[int]:
    """Where each chunk of a valid file starts."""
    offsets, pos = [], FILE_HEADER_SIZE
    while pos < len(data):
        offsets.append(pos)
        pos += CHUNK_HEADER_SIZE + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def contents(tf: TraceFile) -> list[Content]:
    return [
        (
            tuple(c.records),
            c.events.first_seq if c.events is not None else None,
            tuple(rows_of(c.events)) if c.events is not None else (),
        )
        for c in tf.chunks
    ]


def read_or_none(data: bytes) -> TraceFile | None:
    """read_bytes, with the one error it may raise turned into None; anything else propagates."""
    try:
        return read_bytes(data)
    except TraceFormatError:
        return None


@contextmanager
def bounded_memory(limit: int = MEMORY_BOUND) -> Iterator[None]:
    """Fail if the block's peak Python allocation (buffers included) exceeds ``limit``."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit, f"peak allocation {peak / MIB:.1f} MiB is over {limit / MIB:.0f} MiB"


def chunk(
    codec: int, stored: bytes, raw_len: int, crc: int = 0, stored_len: int | None = None
) -> bytes:
    """A hand-made chunk whose header may lie."""
    n = len(stored) if stored_len is None else stored_len
    return struct.pack("<4sBBHIII", b"WCHK", codec, 0, 0, n, raw_len, crc) + stored


ORIGINAL = {codec: make_file(codec) for codec in (CODEC_NONE, CODEC_DEFLATE, CODEC_ZSTD)}
ORIGINAL_CONTENT = contents(read_bytes(ORIGINAL[CODEC_NONE]))


# --- arbitrary and mutated bytes ------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None)


@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    """Any bytes either parse into a TraceFile or raise TraceFormatError (or a subclass)."""
    read_or_none(data)


@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_chunks_after_a_valid_header_raise_only_format_errors(data: bytes) -> None:
    """Garbage after a valid file header raises only the format error, and only when no chunk
    of it is readable; otherwise it is reported as problems or truncation."""
    tf = read_or_none(file_header() + data)
    if tf is None:
        return
    assert tf.major == 1
    assert tf.chunks or not (tf.problems or tf.truncated)


@FUZZ
@given(
    codec=st.integers(0, 3),
    reserved=st.sampled_from([0, 0, 0, 1, 256]),
    stored_len=st.integers(0, 2**32 - 1),
    raw_len=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=200),
    good_crc=st.booleans(),
)
def test_random_chunk_headers_raise_only_format_errors(
    codec: int, reserved: int, stored_len: int, raw_len: int, body: bytes, good_crc: bool
) -> None:
    """A chunk header with random codec, lengths and checksum is reported, never raised."""
    crc = zlib.crc32(body) if good_crc else 0
    bad = (
        struct.pack(
            "<4sBBHIII", b"WCHK", codec, reserved & 0xFF, reserved >> 8, stored_len, raw_len, crc
        )
        + body
    )
    tf = read_or_none(ORIGINAL[CODEC_NONE] + bad)
    assert tf is not None
    assert contents(tf)[:3] == ORIGINAL_CONTENT  # the chunks before it are untouched


@FUZZ
@given(payload=st.binary(max_size=400))
def test_payload_decoder_raises_only_format_errors(payload: bytes) -> None:
    """decode_payload on arbitrary bytes returns or raises TraceFormatError, nothing else."""
    try:
        decode_payload(payload)
    except TraceFormatError:
        pass


VALID_PAYLOADS = [encode_payload(r, e) for r, e in sample_chunks(6)]


@FUZZ
@given(
    which=st.integers(0, len(VALID_PAYLOADS) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_mutated_payloads_with_valid_checksums_raise_only_format_errors(
    which: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """A damaged payload with a matching CRC (a buggy writer) is reported, not crashed on."""
    payload = bytearray(VALID_PAYLOADS[which])
    for pos, byte in edits:
        payload[pos % len(payload)] = byte
    if cut is not None:
        del payload[cut % len(payload) :]
    try:
        decode_payload(bytes(payload))
    except TraceFormatError:
        pass
    raw = bytes(payload)
    tf = read_bytes(
        file_header()
        + chunk(CODEC_NONE, raw, len(raw), zlib.crc32(raw))
        + ORIGINAL[CODEC_NONE][FILE_HEADER_SIZE:]
    )
    assert contents(tf)[-3:] == ORIGINAL_CONTENT  # the good chunks after it are all read


@FUZZ
@given(
    codec=st.sampled_from([CODEC_NONE, CODEC_DEFLATE, CODEC_ZSTD]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 40)), max_size=2),
)
def test_randomly_edited_files_raise_only_format_errors(
    codec: int, edits: list[tuple[int, int]], cuts: list[tuple[int, int]]
) -> None:
    """Byte edits and deleted ranges anywhere in a file raise nothing but TraceFormatError."""
    data = bytearray(ORIGINAL[codec])
    for pos, byte in edits:
        data[pos % len(data)] = byte
    for pos, length in cuts:
        start = pos % len(data)
        del data[start : start + length]
    tf = read_or_none(bytes(data))
    if tf is not None:
        assert all(c in ORIGINAL_CONTENT for c in contents(tf))  # nothing damaged gets through


# --- exhaustive damage to a small file ------------------------------------------------------


def test_every_single_bit_flip_keeps_every_other_chunk() -> None:
    """Flipping any bit of an uncompressed file loses at most the chunk it hits."""
    data = ORIGINAL[CODEC_NONE]
    offsets = chunk_offsets(data)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        where = f"bit {bit % 8} of byte {bit // 8}"
        tf = read_or_none(bytes(flipped))
        if bit // 8 < 7:  # magic or major version: the file is refused as a whole
            assert tf is None, where
            continue
        assert tf is not None, where
        assert not tf.truncated, where
        if bit // 8 < FILE_HEADER_SIZE:  # minor version, reserved bytes: nothing lost
            assert contents(tf) == ORIGINAL_CONTENT, where
            continue
        hit = max(i for i, o in enumerate(offsets) if o <= bit // 8)
        assert contents(tf) == ORIGINAL_CONTENT[:hit] + ORIGINAL_CONTENT[hit + 1 :], where
        assert len(tf.problems) >= 1, where


@pytest.mark.parametrize("codec", [CODEC_DEFLATE, CODEC_ZSTD])
def test_single_bit_flips_in_compressed_files_raise_only_format_errors(codec: int) -> None:
    """A bit flip in a compressed file raises nothing, admits no damage, keeps earlier chunks."""
    data = ORIGINAL[codec]
    offsets = chunk_offsets(data)
    for bit in range(FILE_HEADER_SIZE * 8, len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        tf = read_bytes(bytes(flipped))
        hit = max(i for i, o in enumerate(offsets) if o <= bit // 8)
        got = contents(tf)
        assert got[:hit] == ORIGINAL_CONTENT[:hit], f"bit {bit % 8} of byte {bit // 8}"
        assert all(c in ORIGINAL_CONTENT for c in got)


@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_ZSTD])
def test_truncation_at_every_offset_keeps_the_complete_chunks(codec: int) -> None:
    """A file cut at any byte keeps every chunk before the cut and says if it cut a chunk;
    one cut inside its first chunk has nothing to keep and is refused."""
    data = ORIGINAL[codec]
    ends = [*chunk_offsets(data)[1:], len(data)]
    for cut in range(len(data) + 1):
        tf = read_or_none(data[:cut])
        if cut < FILE_HEADER_SIZE or FILE_HEADER_SIZE < cut < ends[0]:
            assert tf is None, f"cut at {cut}"
            continue
        assert tf is not None, f"cut at {cut}"
        complete = sum(1 for e in ends if e <= cut)
        assert contents(tf) == ORIGINAL_CONTENT[:complete], f"cut at {cut}"
        assert not tf.problems, f"cut at {cut}"
        at_boundary = cut == FILE_HEADER_SIZE or cut in ends
        assert bool(tf.truncated) != at_boundary, f"cut at {cut}: {tf.truncated!r}"


def test_last_chunk_truncated_keeps_earlier_chunks_and_says_so() -> None:
    """A file whose last chunk is cut short keeps the earlier chunks and is marked truncated."""
    data = ORIGINAL[CODEC_ZSTD]
    tf = read_bytes(data[:-3])
    assert contents(tf) == ORIGINAL_CONTENT[:2]
    assert "writer killed" in tf.truncated
    assert tf.problems == []


def test_file_cut_inside_its_first_chunk_is_refused_with_the_reason() -> None:
    """Header plus part of the first chunk (a 40-byte file) raises the format error saying
    no chunk is complete and where the cut is; a bare header is an empty file."""
    data = ORIGINAL[CODEC_ZSTD]
    with pytest.raises(TraceFormatError, match=r"no complete chunk .*chunk 0 at byte 16"):
        read_bytes(data[:40])
    with pytest.raises(TraceFormatError, match=r"no complete chunk .*chunk header"):
        read_bytes(data[: FILE_HEADER_SIZE + 5])
    empty = read_bytes(data[:FILE_HEADER_SIZE])
    assert empty.chunks == [] and not empty.truncated and not empty.problems


def test_nothing_but_damage_after_the_header_is_refused() -> None:
    """A file whose only chunk is corrupt has no data: it raises, naming the chunk."""
    data = bytearray(ORIGINAL[CODEC_NONE][: chunk_offsets(ORIGINAL[CODEC_NONE])[1]])
    data[-1] ^= 0x01
    with pytest.raises(TraceFormatError, match=r"no complete chunk .*chunk 0 at byte 16"):
        read_bytes(bytes(data))


@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_DEFLATE, CODEC_ZSTD])
def test_corrupt_middle_chunk_is_reported_and_later_chunks_read(codec: int) -> None:
    """A middle chunk with a damaged payload is reported by index; the next chunk is read."""
    data = bytearray(ORIGINAL[codec])
    middle = chunk_offsets(bytes(data))[1]
    data[middle + CHUNK_HEADER_SIZE + 2] ^= 0x40
    tf = read_bytes(bytes(data))
    assert contents(tf) == [ORIGINAL_CONTENT[0], ORIGINAL_CONTENT[2]]
    assert len(tf.problems) == 1
    assert f"chunk 1 at byte {middle}" in tf.problems[0]
    assert not tf.truncated


def test_swapped_chunks_are_both_read_in_file_order() -> None:
    """Chunks in an unexpected order (sequence numbers going back) are still each read."""
    data = ORIGINAL[CODEC_DEFLATE]
    a, b, c = chunk_offsets(data)
    swapped = data[:a] + data[b:c] + data[a:b] + data[c:]
    tf = read_bytes(swapped)
    assert contents(tf) == [ORIGINAL_CONTENT[1], ORIGINAL_CONTENT[0], ORIGINAL_CONTENT[2]]
    assert not tf.problems
    assert not tf.truncated


# --- lying lengths and decompression bombs -------------------------------------------------


def _with_middle(bad: bytes) -> bytes:
    """The sample file (codec none) with ``bad`` between its first and second chunks."""
    data = ORIGINAL[CODEC_NONE]
    second = chunk_offsets(data)[1]
    return data[:second] + bad + data[second:]


@pytest.mark.parametrize(
    ("stored_len", "raw_len"),
    [(5, 2**32 - 1), (2**32 - 1, 5), (2**32 - 1, 2**32 - 1), (64 * MIB + 1, 5)],
)
@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_DEFLATE, CODEC_ZSTD])
def test_chunk_claiming_gigabytes_is_refused_without_allocating(
    codec: int, stored_len: int, raw_len: int
) -> None:
    """A chunk header declaring up to 4 GiB is refused without allocating; later chunks are read."""
    data = _with_middle(chunk(codec, b"\x00" * 5, raw_len, stored_len=stored_len))
    with bounded_memory(2 * len(data) + MIB):
        tf = read_bytes(data)
    assert contents(tf) == ORIGINAL_CONTENT
    assert len(tf.problems) == 1
    assert "bound" in tf.problems[0]
    with pytest.raises(TraceLimitError):
        parse_chunk_header(chunk(codec, b"", raw_len, stored_len=stored_len), 0)


BOMB_SIZE = 128 * MIB  # twice the 64 MiB bound on any chunk


@pytest.fixture(scope="module")
def deflate_bomb() -> bytes:
    return zlib.compress(bytes(BOMB_SIZE), 9)


@pytest.fixture(scope="module")
def zstd_bomb() -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(bytes(BOMB_SIZE))


@pytest.fixture(scope="module")
def zstd_bomb_without_size() -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=False).compress(bytes(BOMB_SIZE))


def _assert_bomb_defused(bad: bytes) -> None:
    data = _with_middle(bad)
    with bounded_memory():
        tf = read_bytes(data)
    assert contents(tf) == ORIGINAL_CONTENT
    assert len(tf.problems) == 1


def test_deflate_bomb_is_cut_off_at_its_declared_length(deflate_bomb: bytes) -> None:
    """A deflate chunk declaring 1000 bytes that inflates to 128 MiB is skipped, not inflated."""
    _assert_bomb_defused(chunk(CODEC_DEFLATE, deflate_bomb, 1000))


def test_zstd_bomb_without_content_size_is_cut_off(zstd_bomb_without_size: bytes) -> None:
    """A zstd frame without content size that holds 128 MiB is cut off at the declared length."""
    _assert_bomb_defused(chunk(CODEC_ZSTD, zstd_bomb_without_size, 1000))


def test_deflate_bomb_declaring_zero_bytes_is_cut_off(deflate_bomb: bytes) -> None:
    """A deflate chunk declaring 0 bytes that inflates to 128 MiB is skipped, not inflated."""
    _assert_bomb_defused(chunk(CODEC_DEFLATE, deflate_bomb, 0))


def test_zstd_bomb_with_content_size_is_cut_off(zstd_bomb: bytes) -> None:
    """A zstd frame of 128 MiB in a chunk declaring 1000 bytes is refused, not decompressed."""
    _assert_bomb_defused(chunk(CODEC_ZSTD, zstd_bomb, 1000))


@pytest.mark.parametrize("codec", [CODEC_DEFLATE, CODEC_ZSTD])
def test_overlong_stored_length_does_not_hide_the_next_chunk(codec: int) -> None:
    """A compressed chunk whose stored length is 1 byte too long does not hide the next chunk."""
    data = bytearray(ORIGINAL[codec])
    first = chunk_offsets(bytes(data))[0]
    data[first + 8] += 1
    tf = read_bytes(bytes(data))
    assert contents(tf)[-2:] == ORIGINAL_CONTENT[1:]


def test_stored_length_past_the_end_in_a_middle_chunk_keeps_later_chunks() -> None:
    """A middle chunk whose stored length points past the end is skipped; the next is read."""
    data = bytearray(ORIGINAL[CODEC_ZSTD])
    middle = chunk_offsets(bytes(data))[1]
    data[middle + 8 + 2] ^= 0x01  # stored length + 64 KiB: past the end of this small file
    tf = read_bytes(bytes(data))
    assert contents(tf) == [ORIGINAL_CONTENT[0], ORIGINAL_CONTENT[2]]
    assert tf.problems


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("major", [2, 255])
def test_newer_major_version_asks_for_an_upgrade(major: int) -> None:
    """A newer major version raises TraceVersionError saying it is newer and to upgrade."""
    data = file_header(major, 0) + ORIGINAL[CODEC_NONE][FILE_HEADER_SIZE:]
    with pytest.raises(TraceVersionError, match=r"newer.*upgrade"):
        read_bytes(data)


def test_newer_minor_version_is_read() -> None:
    """A file of a newer minor version of major 1 is read normally."""
    tf = read_bytes(file_header(1, 9) + ORIGINAL[CODEC_NONE][FILE_HEADER_SIZE:])
    assert (tf.major, tf.minor) == (1, 9)
    assert contents(tf) == ORIGINAL_CONTENT


def test_not_a_wtrace_file_is_refused() -> None:
    """Bytes that do not start with the WTRACE magic raise TraceFormatError naming what was seen."""
    with pytest.raises(TraceFormatError, match=r"not a \.wtrace file"):
        read_bytes(b"PK\x03\x04" + bytes(40))
