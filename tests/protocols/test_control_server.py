"""The agent's control channel: where it listens, who may talk to it, its limits, and its
clean-up. In-process (the agent started in the test's own process) and in raw sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from protoharness import (
    PING,
    TOKEN,
    connector,
    control_alive,
    control_outcome,
    exchange,
    frames,
    hello,
)

from willowisp.agent import api, control
from willowisp.agent import recorder as _r
from willowisp.agent.control import BoundariesBackend, ControlServer


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private runtime folder for the agent (short: socket paths are limited)."""
    folder = tempfile.mkdtemp(prefix="wisp-rt-", dir="/tmp")
    os.chmod(folder, 0o700)
    monkeypatch.setenv("WILLOWISP_RUNTIME_DIR", folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def started(tmp_path: Path, runtime_dir: str) -> Iterator[_r.Recorder]:
    if _r.RECORDER is not None:
        pytest.fail("an agent is already running in the test process")
    rec = api.start(out=str(tmp_path / "run"), service="ctl-test")
    assert rec is not None
    try:
        yield rec
    finally:
        api.stop()


def _descriptor(folder: str, rec: _r.Recorder) -> dict[str, object]:
    path = os.path.join(folder, f"{os.getpid()}-{rec.process_id[:8]}.json")
    return dict(json.loads(Path(path).read_text()))


def test_agent_listens_on_a_private_socket(started: _r.Recorder, runtime_dir: str) -> None:
    """The socket is mode 0600 in a 0700 folder; the descriptor (0600) names pid, process
    id, service, run folder, socket and a 32-hex token."""
    d = _descriptor(runtime_dir, started)
    assert stat.S_IMODE(os.stat(runtime_dir).st_mode) == 0o700
    sock = str(d["socket"])
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    desc_path = os.path.join(runtime_dir, f"{os.getpid()}-{started.process_id[:8]}.json")
    assert stat.S_IMODE(os.stat(desc_path).st_mode) == 0o600
    assert d["pid"] == os.getpid() and d["process_id"] == started.process_id
    assert d["service"] == "ctl-test" and d["tcp"] == ""
    assert d["run"] == os.path.realpath(started.config.out)
    token = str(d["token"])
    assert len(token) == 32 and int(token, 16) >= 0
    assert not os.path.exists(os.path.join(started.config.out, "ctl"))


def test_agent_answers_status_and_refuses_a_wrong_token(
    started: _r.Recorder, runtime_dir: str
) -> None:
    """With the descriptor's token: hello, status (with the channel's counters); with any
    other token: unauthorized, and the connection is closed."""
    d = _descriptor(runtime_dir, started)
    connect = connector(f"unix:{d['socket']}")
    good = hello(token=d["token"]) + b"WCTL" + struct.pack("<I", 15) + b'{"op":"status"}'
    replies = frames(exchange(connect, good), b"WCTL")
    assert [control_outcome(r) for r in replies] == ["ok", "ok"]
    assert replies[0]["result"]["agent"]["process_id"] == started.process_id
    status = replies[1]["result"]
    assert status["process_id"] == started.process_id and status["runtime"] == "python"
    assert status["control"]["connections"] >= 1
    bad = frames(exchange(connect, hello(token="0" * 32) + PING), b"WCTL")
    assert [control_outcome(r) for r in bad] == ["error:unauthorized"]
    again = frames(exchange(connect, good), b"WCTL")
    assert again[1]["result"]["control"]["unauthorized"] == 1


def test_stop_removes_socket_and_descriptor(tmp_path: Path, runtime_dir: str) -> None:
    """After stop() nothing of the channel is left in the runtime folder."""
    api.start(out=str(tmp_path / "run"), service="ctl-test")
    assert os.listdir(runtime_dir)
    api.stop()
    assert os.listdir(runtime_dir) == []
    assert control.current() is None


def test_unsafe_runtime_dir_means_no_channel_and_a_fault(tmp_path: Path, runtime_dir: str) -> None:
    """A runtime folder others can enter is refused: no channel, an agent fault, and the
    program carries on."""
    os.chmod(runtime_dir, 0o755)
    rec = api.start(out=str(tmp_path / "run"), service="ctl-test")
    try:
        assert rec is not None and control.current() is None
        assert rec.fault_count >= 1
        assert os.listdir(runtime_dir) == []
    finally:
        api.stop()


def test_tcp_listener_only_on_request(
    tmp_path: Path, runtime_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WILLOWISP_CONTROL=tcp adds a 127.0.0.1 listener (token still required);
    WILLOWISP_CONTROL=off starts nothing."""
    monkeypatch.setenv("WILLOWISP_CONTROL", "tcp")
    rec = api.start(out=str(tmp_path / "run"), service="ctl-test")
    try:
        assert rec is not None
        d = _descriptor(runtime_dir, rec)
        host, _, _port = str(d["tcp"]).rpartition(":")
        assert host == "127.0.0.1"
        connect = connector(str(d["tcp"]))
        assert [control_outcome(r) for r in frames(exchange(connect, PING), b"WCTL")] == [
            "error:hello-required"
        ]
        ok = frames(exchange(connect, hello(token=d["token"]) + PING), b"WCTL")
        assert [control_outcome(r) for r in ok] == ["ok", "ok"]
    finally:
        api.stop()
    monkeypatch.setenv("WILLOWISP_CONTROL", "off")
    api.start(out=str(tmp_path / "run2"), service="ctl-test")
    try:
        assert control.current() is None and os.listdir(runtime_dir) == []
    finally:
        api.stop()


@pytest.fixture
def server() -> Iterator[ControlServer]:
    folder = tempfile.mkdtemp(prefix="wisp-s-", dir="/tmp")
    info = {"pid": os.getpid(), "process_id": "0" * 32, "service": "t", "runtime": "python"}
    srv = ControlServer(TOKEN, info, BoundariesBackend(), unix_path=f"{folder}/c.sock")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_too_many_connections_are_told_busy(server: ControlServer) -> None:
    """Past MAX_CONNECTIONS open connections a new one gets `busy`; once they close,
    connections are served again."""
    connect = connector(f"unix:{server.unix_path}")
    held = []
    try:
        for _ in range(control.MAX_CONNECTIONS):
            s = connect()
            s.sendall(hello())  # answered: the connection is being served
            assert frames(s.recv(4096), b"WCTL")[0]["ok"] is True
            held.append(s)
        extra = connect()  # says nothing: the busy reply comes at once
        received = bytearray()
        while part := extra.recv(4096):
            received += part
        extra.close()
        assert [control_outcome(r) for r in frames(bytes(received), b"WCTL")] == ["error:busy"]
    finally:
        for s in held:  # the agent closes its end after freeing the slot: wait for that
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
            s.close()
    control_alive(connect)


def test_a_silent_client_is_timed_out(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that sends no complete hello in time gets `timeout` and is closed."""
    monkeypatch.setattr(control, "HELLO_TIMEOUT_S", 0.2)
    s = connector(f"unix:{server.unix_path}")()
    try:
        s.sendall(b"WCTL")  # half a header, then nothing
        received = bytearray()
        while part := s.recv(4096):
            received += part
    finally:
        s.close()
    assert [control_outcome(r) for r in frames(bytes(received), b"WCTL")] == ["error:timeout"]


def test_socket_path_limit_is_checked() -> None:
    """A socket path over 107 bytes is refused up front, with nothing left behind."""
    info = {"pid": 1, "process_id": "0" * 32, "service": "t", "runtime": "python"}
    long_path = "/tmp/" + "x" * 120 + ".sock"
    srv = ControlServer(TOKEN, info, BoundariesBackend(), unix_path=long_path)
    with pytest.raises(OSError, match="107"):
        srv.start()
    assert not os.path.exists(long_path)


def test_stale_descriptors_of_dead_processes_are_swept(runtime_dir: str) -> None:
    """Files of a pid that no longer exists are removed; a live process's are kept."""
    dead = 2**22 + 12345  # above pid_max's default range: no such process
    for name in (f"{dead}-abcdef01.json", f"{dead}-abcdef01.sock", f"{os.getpid()}-x.json"):
        Path(runtime_dir, name).write_text("{}")
    control.sweep_stale(runtime_dir)
    assert os.listdir(runtime_dir) == [f"{os.getpid()}-x.json"]


def test_request_ids_round_trip(server: ControlServer) -> None:
    """String and integer ids come back; the agent block of the hello names the agent."""
    connect = connector(f"unix:{server.unix_path}")
    body = b'{"op":"ping","id":"x1"}'
    data = hello(id=7) + b"WCTL" + struct.pack("<I", len(body)) + body
    replies = frames(exchange(connect, data), b"WCTL")
    assert [r.get("id") for r in replies] == [7, "x1"]
    assert replies[0]["result"]["version"] == 1
    assert set(replies[0]["result"]["ops"]) == {"ping", "status", "enable", "disable"}
