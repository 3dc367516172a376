"""What replay's ``state`` calls in flight: a consumed message and a started child are not."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from willowisp.analysis.engine import analyze
from willowisp.causality.hops import HopKind
from willowisp.ingest.load import load
from willowisp.replay.script import state_lines
from willowisp.replay.steps import Stepper
from wispkit import clean_env, wisp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
import brokers  # tests/agent's real-broker kit

PROGRAM = Path(__file__).parent / "programs" / "in_flight.py"

if not brokers.importable("redis"):
    pytest.skip("redis-py is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Five stream messages sent and each read back, then a child spawned (one run)."""
    folder = tmp_path_factory.mktemp("in_flight")
    (folder / "redis").mkdir()
    broker = brokers.start_redis(str(folder / "redis"))
    try:
        out = folder / "run"
        done = wisp(
            "run", "--out", str(out), "--", sys.executable, str(PROGRAM), str(broker.port),
            env=clean_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "child sees 5" in done.stdout
        yield out
    finally:
        brokers.stop(broker)


def test_nothing_is_in_flight_once_every_message_was_read_and_the_child_started(
    recording: Path, tmp_path: Path
) -> None:
    """At the end, the five consumed messages and the started child are not in flight."""
    script = tmp_path / "s.txt"
    script.write_text("goto end\nstate\n")
    done = wisp("replay", str(recording), "--script", str(script), env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "requests in flight: none" in done.stdout, done.stdout


def test_a_message_flies_until_read_and_a_spawn_until_its_child_starts(recording: Path) -> None:
    """Each message leaves the flight at its receipt; a spawn, named by its child, at the
    child's start."""
    a = analyze(load([recording]))
    s = Stepper(a)
    hops = a.causality.hops
    kinds = {HopKind.MESSAGE: 0, HopKind.SPAWN: 0}
    spawn_lines: list[str] = []
    for k in range(len(s)):
        cut = s.goto(k, remember=False)
        i = s.event(k)
        for row in cut.inflight:
            kind = HopKind(int(hops.kind[row]))
            if kind in kinds:
                # still travelling: the event that ends its flight is later than this step
                end = int(hops.recv[row])
                assert end < 0 or s.position[end] > k or end == i
                kinds[kind] += 1
            if kind == HopKind.SPAWN and not spawn_lines:
                spawn_lines = [x for x in state_lines(s) if "spawn" in x]
    assert kinds[HopKind.MESSAGE] > 0 and kinds[HopKind.SPAWN] > 0  # each flew for a while
    assert spawn_lines and spawn_lines[0].strip().startswith("spawn of in_flight (python) from")
