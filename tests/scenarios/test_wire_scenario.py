"""The wire, end to end: an orchestrator calls an aiohttp service, a grpcio service and a
RabbitMQ consumer (a real broker); one call goes through a proxy that drops traceparent.
Every other hop is linked with its provenance and the dropped hop is reported by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
import brokers

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory):
    broker = brokers.start_rabbitmq(str(tmp_path_factory.mktemp("rabbitmq")))
    try:
        yield broker
    finally:
        brokers.stop(broker)


def test_orchestrator_aiohttp_grpc_rabbitmq_with_one_dropped_header(tmp_path, rabbitmq):
    """Linked: 3 aiohttp calls, 3 gRPC calls, 3 AMQP messages, each with its provenance;
    reported: the /legacy hop whose header a proxy dropped, by name."""
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--service",
            "orchestrator",
            "--",
            sys.executable,
            str(PROGRAMS / "polyglot_shop.py"),
            "orchestrate",
            str(rabbitmq.port),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "shop done" in r.stdout
    a = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert a.returncode == 0, a.stderr
    doc = json.loads(a.stdout)
    hops = doc["hops"]

    def hop(protocol: str, library: str, to: str) -> dict:
        found = [
            h
            for h in hops
            if h["protocol"] == protocol
            and library in h["libraries"]
            and h["from"]["service"] == "orchestrator"
            and h["to"]["service"] == to
        ]
        assert len(found) == 1, (protocol, library, to, hops)
        return found[0]

    aio = hop("http", "aiohttp", "quote")
    assert aio["linked"] == 3 and aio["provenance"] == {"traceparent": 3}
    grpc_hop = hop("grpc", "grpcio", "stock")
    assert grpc_hop["linked"] == 3 and grpc_hop["provenance"] == {"traceparent": 3}
    amqp = hop("amqp", "pika", "ledger")
    assert amqp["linked"] == 3 and amqp["provenance"].get("traceparent") == 3
    dropped = [f for f in doc["findings"] if f["kind"] == "dropped-context"]
    assert len(dropped) == 1, [f["summary"] for f in doc["findings"]]
    assert "orchestrator → quote GET /legacy" in dropped[0]["summary"]
    assert "/quote" not in dropped[0]["summary"]
    assert not [f for f in doc["findings"] if f["kind"] in ("deadlock", "broken-link")]
