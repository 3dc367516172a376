"""Fuzzing the control server and the native receiver: whatever bytes arrive, replies are
well-formed frames, files hold only valid chunks, and the server keeps serving."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protoharness import (
    CORPUS,
    TOKEN,
    connector,
    control_alive,
    control_outcome,
    count_chunks,
    exchange,
    frames,
    hello,
    items,
    load_generate,
    stream_hello_bytes,
    stream_outcome,
    wtrace_files,
)

from willowisp.agent import boundaries
from willowisp.agent.control import BoundariesBackend, ControlServer
from willowisp.collect.native import NativeReceiver

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTROL_SEEDS = [(CORPUS / it["file"]).read_bytes()[:4096] for it in items("control")]
STREAM_SEEDS = [(CORPUS / it["file"]).read_bytes()[:4096] for it in items("stream")]


@pytest.fixture(scope="module")
def control_address() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="wisp-f-", dir="/tmp")
    info = {"pid": os.getpid(), "process_id": "0" * 32, "service": "fuzz", "runtime": "python"}
    server = ControlServer(
        TOKEN, info, BoundariesBackend(), unix_path=os.path.join(folder, "c.sock")
    )
    server.start()
    try:
        yield f"unix:{server.unix_path}"
    finally:
        server.stop()
        boundaries.reset()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def receiver() -> Iterator[NativeReceiver]:
    out = tempfile.mkdtemp(prefix="wisp-fz-")
    r = NativeReceiver(out, token=TOKEN)
    r.start()
    try:
        yield r
    finally:
        r.stop()
        shutil.rmtree(out, ignore_errors=True)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A corpus item with a few bytes flipped, cut, inserted or duplicated."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _control_input() -> st.SearchStrategy[bytes]:
    after_hello = st.binary(max_size=512).map(lambda b: hello() + b)
    return st.one_of(mutated(CONTROL_SEEDS), after_hello, st.binary(max_size=512))


@FUZZ
@given(data=_control_input())
def test_control_server_survives_any_bytes(control_address: str, data: bytes) -> None:
    """Any bytes: every reply is a well-formed frame with a known outcome; then a valid
    client is still served."""
    connect = connector(control_address)
    for reply in frames(exchange(connect, data), b"WCTL"):
        control_outcome(reply)
    control_alive(connect)


def _stream_input() -> st.SearchStrategy[bytes]:
    gen = load_generate()
    after_hello = st.binary(max_size=512).map(lambda b: stream_hello_bytes() + gen.C1 + b)
    return st.one_of(mutated(STREAM_SEEDS), after_hello, st.binary(max_size=512))


@FUZZ
@given(data=_stream_input())
def test_native_receiver_survives_any_bytes(receiver: NativeReceiver, data: bytes) -> None:
    """Any bytes: the collector's messages are well-formed, whatever it acknowledged is in
    its file as valid chunks, and it still accepts a valid agent."""
    connect = connector(receiver.address)
    before = set(wtrace_files(receiver.out))
    got = stream_outcome(exchange(connect, data))
    made = set(wtrace_files(receiver.out)) - before
    if got["hello"] == "ok":
        assert count_chunks(str(Path(receiver.out) / got["file"])) == got["acked"]
    for path in made:
        count_chunks(path)  # only valid chunks, nothing half-written
    again = stream_outcome(exchange(connect, stream_hello_bytes()))
    assert again["hello"] == "ok"
