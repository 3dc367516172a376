"""Real brokers for the messaging tests: a private redis-server (or a 3-node Redis Cluster)
and RabbitMQ node each, on free ports in a temporary folder, started and stopped by the
test's fixture; and librdkafka's in-process mock cluster, a Kafka broker on a loopback port
that Python Kafka clients reach over TCP like any other.

Readiness is a real signal, never a sleep that hopes: Redis answers PING, a cluster reports
``cluster_state:ok`` on every node; RabbitMQ accepts an AMQP connection (its listener opens
only once the broker has booted); the Kafka mock answers a metadata request.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tracekit import PYTHON

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


def postgres_bin() -> str:
    """The folder of PostgreSQL's server programs (Debian's package), '' if absent."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else ""


def start_postgres() -> Broker:
    """A throwaway PostgreSQL: a new cluster in a fresh folder of its own under the temp
    dir (owned by the ``postgres`` user when we are root, since the server refuses to run
    as root, and pytest's folders are root's alone), trust auth on 127.0.0.1, ready when it
    accepts a connection. The database ``shop`` exists. ``stop_postgres`` removes it all."""
    import tempfile

    bindir = postgres_bin()
    port = free_port()
    t0 = time.monotonic()
    folder = tempfile.mkdtemp(prefix="wisp-pg-")
    data = os.path.join(folder, "pgdata")
    os.makedirs(data)
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for path in (folder, data):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    made = subprocess.run(
        [*as_user, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, f"initdb failed: {made.stderr[-2000:]}"
    proc = subprocess.Popen(
        [*as_user, os.path.join(bindir, "postgres"), "-D", data, "-p", str(port)]
        + ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}"]
        + ["-c", "fsync=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = Broker(port, proc, folder, 0, {})
    try:
        _wait(lambda: _pg_ready(bindir, port), proc, "postgres", 60)
        subprocess.run(
            [os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            + ["-U", "postgres", "shop"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    except BaseException:
        stop_postgres(broker)
        raise
    return Broker(port, proc, folder, time.monotonic() - t0, {})


def stop_postgres(broker: Broker) -> None:
    stop(broker)
    shutil.rmtree(broker.folder, ignore_errors=True)


def _pg_ready(bindir: str, port: int) -> bool:
    done = subprocess.run(
        [os.path.join(bindir, "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


def _redis_command(port: int, *args: str) -> bytes:
    """One command in RESP to the Redis on ``port``; its raw reply (b'' if unreachable)."""
    frame = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(frame.encode())
            return s.recv(65536)
    except OSError:
        return b""


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def start_redis_cluster(folder: str, nodes: int = 3, timeout: float = 30) -> list[Broker]:
    """A Redis Cluster of ``nodes`` masters, no replicas, the slots split evenly; ready when
    every node knows every other and reports ``cluster_state:ok`` (about 2 s: Redis waits
    that long before a new master takes writes)."""
    started: list[Broker] = []
    t0 = time.monotonic()
    try:
        for _ in range(nodes):
            port = _cluster_port()
            where = os.path.join(folder, str(port))
            os.makedirs(where)
            proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--dir", where, "--cluster-enabled", "yes"]
                + ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            started.append(Broker(port, proc, where, 0, {}))
            _wait(lambda: _answers(port, b"PING\r\n", b"+PONG"), proc, "redis-server", timeout)
        share = 16384 // nodes
        for i, node in enumerate(started):
            last = 16383 if i == nodes - 1 else (i + 1) * share - 1
            _redis_command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(i * share), str(last))
        for node in started[1:]:
            _redis_command(started[0].port, "CLUSTER", "MEET", "127.0.0.1", str(node.port))
        known = f"cluster_known_nodes:{nodes}".encode()

        def ready() -> bool:
            infos = [_redis_command(n.port, "CLUSTER", "INFO") for n in started]
            return all(b"cluster_state:ok" in i and known in i for i in infos)

        _wait(ready, started[0].proc, "redis cluster", timeout)
    except BaseException:
        for node in started:
            stop(node)
        raise
    for node in started:
        node.started_s = time.monotonic() - t0
    return started


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


class KafkaMock:
    """librdkafka's mock cluster, living in this (the test) process while ``handle`` does:
    a Kafka broker on a loopback port, reached over TCP by the recorded programs."""

    def __init__(self, brokers: int = 1) -> None:
        import confluent_kafka

        # The producer that owns the mock cluster; nothing is produced through it.
        self.handle: Any = confluent_kafka.Producer(
            {"test.mock.num.brokers": brokers, "log_level": 0}
        )
        metadata = self.handle.list_topics(timeout=10)  # answers: the broker is up
        broker = next(iter(metadata.brokers.values()))
        self.bootstrap = f"{broker.host}:{broker.port}"

    def stop(self) -> None:
        """End the mock cluster (librdkafka stops it with its last handle)."""
        self.handle = None


@functools.cache
def importable(*modules: str) -> bool:
    """Whether the interpreter the recorded programs run under can import ``modules`` (the
    third-party libraries are installed for the test's own virtualenv only)."""
    code = "; ".join(f"import {name}" for name in modules)
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, timeout=60, check=False)
    return done.returncode == 0
