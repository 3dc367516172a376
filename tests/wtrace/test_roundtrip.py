"""Property tests: records and events survive the binary format (every codec) and the text twin."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR
from willowisp.wtrace.framing import CODEC_DEFLATE, CODEC_NONE, CODEC_ZSTD, file_header
from willowisp.wtrace.payload import EventBatch, Record, rows_of
from willowisp.wtrace.reader import TraceFile, read_bytes
from willowisp.wtrace.text import chunks_to_text, from_text, to_text
from willowisp.wtrace.writer import encode_chunk

Row = tuple[int, int, int, int, int, int]
Chunks = list[tuple[list[Record], EventBatch | None]]

INT64 = st.integers(-(2**63), 2**63 - 1)
U32 = st.integers(0, 2**32 - 1)


def records(keys: st.SearchStrategy[str]) -> st.SearchStrategy[list[Record]]:
    value = st.one_of(INT64, st.text(max_size=16), st.binary(max_size=16))
    record = st.builds(
        Record,
        st.integers(0, 255),
        st.integers(0, 2**64 - 1),
        st.lists(st.tuples(keys, value), max_size=5).map(tuple),
    )
    return st.lists(record, max_size=5)


@st.composite
def batches(draw: st.DrawFn) -> EventBatch | None:
    # Times are absolute and need not be sorted (events of several units), below 2**63.
    times = draw(st.lists(st.integers(0, 2**63 - 1), max_size=30))
    if not times:
        return draw(st.sampled_from([None, EventBatch(first_seq=7)]))  # no events either way
    batch = EventBatch(first_seq=draw(st.integers(0, 2**63)))
    for t in times:
        batch.append(draw(st.integers(0, 255)), draw(U32), t, draw(U32), draw(INT64), draw(U32))
    return batch


ANY_KEY = st.text(max_size=10)
# Plain identifier keys are written bare; others quoted (test_text_keeps_keys_that_are_not_words).
WORD_KEY = st.from_regex(r"\w{1,10}", fullmatch=True)


def chunk_lists(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Chunks]:
    return st.lists(st.tuples(records(keys), batches()), max_size=4)


def encode_file(chunks: Chunks, codec: int) -> bytes:
    return file_header() + b"".join(encode_chunk(r, e, codec) for r, e in chunks)


Content = tuple[list[Record], int | None, list[Row]]


def content(chunks: Chunks) -> list[Content]:
    """What a chunk means: its records and, if it has events, its first_seq and rows."""
    out: list[Content] = []
    for recs, batch in chunks:
        if batch is None or not len(batch):
            out.append((list(recs), None, []))
        else:
            out.append((list(recs), batch.first_seq, list(batch.rows())))
    return out


def content_of(tf: TraceFile) -> list[Content]:
    assert not tf.problems
    assert not tf.truncated
    return [
        (c.records, None, [])
        if c.events is None
        else (c.records, c.events.first_seq, rows_of(c.events))
        for c in tf.chunks
    ]


SETTINGS = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_DEFLATE, CODEC_ZSTD])
@SETTINGS
@given(chunks=chunk_lists(ANY_KEY))
def test_binary_round_trip_is_lossless(codec: int, chunks: Chunks) -> None:
    """Random chunks encoded with each codec read back as the same records and events."""
    assert content_of(read_bytes(encode_file(chunks, codec))) == content(chunks)


@SETTINGS
@given(chunks=chunk_lists(ANY_KEY))
def test_encoding_is_deterministic(chunks: Chunks) -> None:
    """The same chunks always encode to the same bytes (codec none)."""
    assert encode_file(chunks, CODEC_NONE) == encode_file(chunks, CODEC_NONE)


@SETTINGS
@given(chunks=chunk_lists(WORD_KEY))
def test_text_round_trip_is_lossless(chunks: Chunks) -> None:
    """chunks_to_text then from_text gives back the same records and events."""
    assert content(from_text(chunks_to_text(chunks))) == content(chunks)


@SETTINGS
@given(chunks=chunk_lists(WORD_KEY))
def test_binary_to_text_to_binary_is_byte_identical(chunks: Chunks) -> None:
    """A file (codec none) turned into text and back encodes to exactly the same bytes."""
    data = encode_file(chunks, CODEC_NONE)
    text = to_text(read_bytes(data))
    assert text == chunks_to_text(chunks)
    assert encode_file(from_text(text), CODEC_NONE) == data


@pytest.mark.parametrize("codec", [CODEC_DEFLATE, CODEC_ZSTD])
@SETTINGS
@given(chunks=chunk_lists(WORD_KEY))
def test_compressed_file_reads_as_the_same_text(codec: int, chunks: Chunks) -> None:
    """A compressed file and an uncompressed one with the same chunks have the same text twin."""
    assert to_text(read_bytes(encode_file(chunks, codec))) == chunks_to_text(chunks)


def test_text_example_from_the_module_docstring_parses() -> None:
    """The documented text form parses into one chunk with a record and two events."""
    text = (
        "wtrace 1.0\nchunk\n"
        'rec unit 1 kind="thread" name="MainThread" parent=0\n'
        "seq 1\nev 1000 unit.start u=1\nev 1500 lock.acquired u=1 r=3 a=0 l=2\nend\n"
    )
    [(recs, batch)] = from_text(text)
    assert recs == [Record(2, 1, (("kind", "thread"), ("name", "MainThread"), ("parent", 0)))]
    assert batch is not None
    assert list(batch.rows()) == [(2, 1, 1000, 0, 0, 0), (10, 1, 1500, 3, 0, 2)]
    # written back at the current format version (the text above is a 1.0 file)
    current = text.replace("wtrace 1.0", f"wtrace {FORMAT_MAJOR}.{FORMAT_MINOR}")
    assert chunks_to_text([(recs, batch)]) == current.replace(" a=0", "")


@pytest.mark.parametrize("key", ["http.method", "a-b", "", "two words", "k=v"])
def test_text_keeps_keys_that_are_not_words(key: str) -> None:
    """Attribute keys that are not identifiers (dots, dashes, empty) survive the text twin."""
    chunks: Chunks = [([Record(3, 1, ((key, "GET"),))], None)]
    assert content(from_text(chunks_to_text(chunks))) == content(chunks)
