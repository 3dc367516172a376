"""The optional C record encoder writes exactly the bytes of the Python reference."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.wtrace import payload
from willowisp.wtrace.payload import Record

native = importlib.import_module("willowisp._native")

VALUE = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12), st.binary(max_size=12))
RECORD = st.builds(
    Record,
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    st.lists(st.tuples(st.text(max_size=8), VALUE), max_size=6).map(tuple),
)


def python_encoding(records: list[Record]) -> bytes:
    saved = payload._native_records
    payload._native_records = None
    try:
        return payload.encode_payload(records, None)
    finally:
        payload._native_records = saved


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORD, max_size=8))
def test_same_bytes_as_python(records):
    """For any records, the C and Python encoders produce identical payloads."""
    head, body = native.encode_records(records)
    assert head + body + b"\x00" == python_encoding(records)


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), (2**63, ValueError), (-(2**63) - 1, ValueError), (1.5, TypeError)],
)
def test_refuses_what_python_refuses(value, error):
    """Bools, floats and integers beyond 64 bits are refused, as by the Python encoder."""
    records = [Record(3, 1, (("v", value),))]
    with pytest.raises(error):
        native.encode_records(records)
    with pytest.raises(error):
        python_encoding(records)


def test_surrogates_pass_through():
    """Lone surrogates (file names from os APIs) are encoded like Python's surrogatepass."""
    records = [Record(4, 1, (("file", "bad\udcff.py"),))]
    head, body = native.encode_records(records)
    assert head + body + b"\x00" == python_encoding(records)
