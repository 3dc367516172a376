"""Real brokers for the messaging tests: a private redis-server and RabbitMQ node each, on a
free port in a temporary folder, started and stopped by the test's fixture.

Readiness is a real signal, never a sleep that hopes: Redis answers PING; RabbitMQ accepts
an AMQP connection (its listener opens only once the broker has booted).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass

REDIS_SERVER = "/usr/bin/redis-server"
RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"  # the real scripts; /usr/sbin's wrapper switches user


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    folder: str
    started_s: float  # how long it took to be ready
    env: dict[str, str]
    epmd: subprocess.Popen[bytes] | None = None  # RabbitMQ's port mapper, ours to stop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ready: object, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)  # polling interval for a readiness probe, not a wait for an event
    raise RuntimeError(f"{what} not ready after {timeout} s")


def _answers(port: int, hello: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(hello)
            return s.recv(64).startswith(expect)
    except OSError:
        return False


def start_redis(folder: str) -> Broker:
    """A redis-server with no persistence, ready when it answers PING."""
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait(lambda: _answers(port, b"PING\r\n", b"+PONG"), proc, "redis-server", 15)
    except BaseException:
        stop(Broker(port, proc, folder, 0, {}))
        raise
    return Broker(port, proc, folder, time.monotonic() - t0, {})


def start_rabbitmq(folder: str, timeout: float = 30) -> Broker:
    """A private RabbitMQ node (no plugins), ready when it speaks AMQP on its port."""
    port = free_port()
    name = f"wisp{uuid.uuid4().hex[:8]}@localhost"
    plugins = os.path.join(folder, "enabled_plugins")
    with open(plugins, "w") as f:
        f.write("[].\n")
    open(os.path.join(folder, "rabbitmq.conf"), "w").close()
    env = dict(os.environ)
    env.update(
        HOME=folder,  # the Erlang cookie goes here
        RABBITMQ_NODE_PORT=str(port),
        # its own Erlang port mapper, on a free port, so stop() can end it (the default one
        # on 4369 would outlive the test, shared by any other Erlang node)
        ERL_EPMD_PORT=str(free_port()),
        RABBITMQ_DIST_PORT=str(free_port()),
        RABBITMQ_NODENAME=name,
        RABBITMQ_MNESIA_BASE=os.path.join(folder, "mnesia"),
        RABBITMQ_LOG_BASE=os.path.join(folder, "log"),
        RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
        RABBITMQ_CONFIG_FILE=os.path.join(folder, "rabbitmq"),
        RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(folder, "advanced.config"),
        RABBITMQ_CONF_ENV_FILE=os.path.join(folder, "rabbitmq-env.conf"),
        RABBITMQ_PID_FILE=os.path.join(folder, "pid"),
    )
    t0 = time.monotonic()
    # Our own epmd, in the foreground and in the node's process group: Erlang would otherwise
    # start a daemon of its own (from the node or from rabbitmqctl) that outlives the test.
    epmd_bin = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
    epmd_port = int(env["ERL_EPMD_PORT"])
    epmd = subprocess.Popen(
        [epmd_bin, "-port", str(epmd_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _listening(epmd_port), epmd, "epmd", timeout)
    except BaseException:
        epmd.kill()
        epmd.wait()
        raise
    with open(os.path.join(folder, "server.log"), "wb") as log:
        proc = subprocess.Popen(
            [os.path.join(RABBITMQ_BIN, "rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    broker = Broker(port, proc, folder, 0, env, epmd)
    try:
        # An AMQP 0-9-1 header gets Connection.Start (a method frame, type 1) back.
        _wait(lambda: _answers(port, b"AMQP\x00\x00\x09\x01", b"\x01"), proc, "rabbitmq", timeout)
    except BaseException:
        stop(broker)
        raise
    broker.started_s = time.monotonic() - t0
    return broker


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def stop(broker: Broker) -> None:
    """Stop the broker and everything it started (its process group), then its folder."""
    if broker.env.get("RABBITMQ_NODENAME") and broker.proc.poll() is None:
        subprocess.run(
            [os.path.join(RABBITMQ_BIN, "rabbitmqctl"), "-n", broker.env["RABBITMQ_NODENAME"]]
            + ["stop"],
            env=broker.env,
            capture_output=True,
            timeout=30,
            check=False,
        )
    try:
        os.killpg(broker.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    broker.proc.wait(timeout=30)
    if broker.epmd is not None:  # last: no Erlang process is left to start another one
        broker.epmd.kill()
        broker.epmd.wait(timeout=30)
    shutil.rmtree(os.path.join(broker.folder, "mnesia"), ignore_errors=True)
