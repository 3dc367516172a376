"""The protocol corpus (conformance/protocols) against the Python control server and the
collector's native receiver, over real Unix and TCP sockets."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from protoharness import (
    CORPUS,
    TOKEN,
    check_control_item,
    connector,
    control_alive,
    count_chunks,
    exchange,
    items,
    load_generate,
    stream_hello_bytes,
    stream_outcome,
    wtrace_files,
)

from willowisp.agent import boundaries
from willowisp.agent.control import BoundariesBackend, ControlServer
from willowisp.collect.native import NativeReceiver

INFO = {"pid": os.getpid(), "process_id": "0" * 32, "service": "corpus", "runtime": "python"}


@pytest.fixture(scope="module")
def control() -> Iterator[ControlServer]:
    """A control server on a Unix socket and 127.0.0.1, with the corpus token."""
    folder = tempfile.mkdtemp(prefix="wisp-c-", dir="/tmp")  # short: sun_path is 108 bytes
    server = ControlServer(
        TOKEN,
        INFO,
        BoundariesBackend(),
        unix_path=os.path.join(folder, "c.sock"),
        tcp=True,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        boundaries.reset()
        shutil.rmtree(folder, ignore_errors=True)


def _address(server: ControlServer, transport: str) -> str:
    return f"unix:{server.unix_path}" if transport == "unix" else server.tcp_address


def test_committed_corpus_matches_a_fresh_generation() -> None:
    """The corpus files are exactly what generate.py builds (they cannot drift)."""
    built = load_generate().build()
    on_disk = {
        str(p.relative_to(CORPUS)): p.read_bytes()
        for p in CORPUS.rglob("*")
        if p.is_file() and p.suffix in (".bin", ".json")
    }
    assert set(on_disk) == set(built), "run conformance/protocols/generate.py"
    for rel, data in built.items():
        assert on_disk[rel] == data, f"{rel} is stale: run conformance/protocols/generate.py"


def test_corpus_covers_the_malformed_kinds() -> None:
    """Truncated, oversized, bad magic/version/token, bad JSON, unknown command, huge
    strings and non-UTF-8 are all in the corpus, for both channels."""
    names = {(it["channel"], it["name"]) for it in items("control") + items("stream")}
    for channel, name in [
        ("control", "truncated_body"),
        ("control", "oversized_length"),
        ("control", "http_request"),
        ("control", "unsupported_version"),
        ("control", "bad_token"),
        ("control", "bad_json"),
        ("control", "unknown_command"),
        ("control", "huge_boundary"),
        ("control", "non_utf8"),
        ("stream", "chunk_truncated"),
        ("stream", "chunk_oversized_chunk"),
        ("stream", "http_request"),
        ("stream", "newer_format"),
        ("stream", "bad_token"),
        ("stream", "hello_bad_json"),
        ("stream", "huge_service"),
        ("stream", "hello_non_utf8"),
        ("stream", "chunk_bad_crc"),
    ]:
        assert (channel, name) in names


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize("item", items("control"), ids=lambda it: it["name"])
def test_control_corpus_item(control: ControlServer, item: dict[str, Any], transport: str) -> None:
    """Each control item gets exactly its expected replies, and the server lives on."""
    connect = connector(_address(control, transport))
    data = (CORPUS / item["file"]).read_bytes()
    check_control_item(item, exchange(connect, data))
    control_alive(connect)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("item", items("stream"), ids=lambda it: it["name"])
def test_stream_corpus_item(tmp_path: Path, item: dict[str, Any], transport: str) -> None:
    """Each stream item gets its expected hello, acknowledgements, ending and file; the
    receiver then still accepts a valid agent."""
    out = tmp_path / "col"
    sock_dir = tempfile.mkdtemp(prefix="wisp-s-", dir="/tmp")
    unix_path = os.path.join(sock_dir, "s.sock") if transport == "unix" else ""
    receiver = NativeReceiver(str(out), token=TOKEN, unix_path=unix_path)
    connect = connector(receiver.start())
    try:
        got = stream_outcome(exchange(connect, (CORPUS / item["file"]).read_bytes()))
        assert {k: got[k] for k in ("hello", "acked", "end")} == {
            k: item[k] for k in ("hello", "acked", "end")
        }
        if item["hello"] == "ok":
            assert count_chunks(str(out / got["file"])) == item["chunks"]
            if "segment_file" in item:
                assert got["file"] == item["segment_file"]
        else:
            assert wtrace_files(str(out)) == []
        again = stream_outcome(exchange(connect, stream_hello_bytes()))
        assert again["hello"] == "ok" and again["end"] == "close"
    finally:
        receiver.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
