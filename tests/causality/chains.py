"""Builder for tests: services calling each other, each on its own clock.

``write_chain(folder, clocks, ...)`` writes one trace file per service: the first service
(the run root, the reference) sends a request every ``period_ns`` of true time to the
second, whose handler calls the third, and so on; each reply goes back the same way. Every
request of one round shares a W3C trace id, as propagated context does. ``write_star``
instead has the first service call each of the others in turn, every round. Each service's
clock is a :class:`Clock`: its monotonic time runs ``ppm`` parts per million fast against
true time and its wall clock reads ``skew_ns`` ahead at true time 0, so the truth of every
offset is known and tests can check the analyzer against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golden.tracetext import chunk, process, write_trace

WALL0 = 1_700_000_000_000_000_000  # true wall time at true time 0
LATENCY_NS = 300_000  # one way on the wire
STEP_NS = 50_000  # a handler's work before calling on and before replying


@dataclass(frozen=True)
class Clock:
    """A machine's clock against true time t (ns since the run began)."""

    ppm: float = 0.0  # how fast its oscillator runs (positive: fast)
    skew_ns: int = 0  # how far ahead its wall clock reads at t = 0
    mono0: int = 5_000_000_000  # its monotonic reading at t = 0

    def mono(self, t: int) -> int:
        return self.mono0 + t + round(t * self.ppm / 1e6)

    def raw(self, t: int) -> int:
        """What its anchors make of the monotonic reading at t (wall - mono is constant:
        the one oscillator drives both, so its own anchors agree)."""
        return self.mono(t) + (WALL0 + self.skew_ns - self.mono0)

    def offset_at_raw(self, raw: int) -> float:
        """The true offset (to add to this clock's raw time to get true wall time) at one
        of its raw readings, found by inverting raw(t)."""
        t = (raw - WALL0 - self.skew_ns) / (1 + self.ppm / 1e6)
        return WALL0 + t - raw


def write_chain(
    folder: Path,
    clocks: list[Clock],
    *,
    rounds: int,
    period_ns: int,
    start_ns: int = 1_000_000_000,
) -> Path:
    """Write the run (see the module doc) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(clocks)
    names = [f"svc{i}" for i in range(n)]
    recs: list[list[str]] = [[] for _ in range(n)]
    evs: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for i, clock in enumerate(clocks):
        evs[i].append((clock.mono(0), f"clock.anchor a={clock.raw(0)}"))
        evs[i].append((clock.mono(1_000), "unit.start u=1"))
    res = [1] * n
    for k in range(rounds):
        trace_id = f"{k + 1:032x}"
        # True times of the round: service i sends at sent[i], i + 1 receives at recv[i + 1]
        # and calls on after STEP_NS; the last replies after STEP_NS, each caller replies
        # STEP_NS after its own answer came back.
        sent, recv, reply, answered = [0] * n, [0] * n, [0] * n, [0] * n
        sent[0] = start_ns + k * period_ns
        for i in range(n - 1):
            recv[i + 1] = sent[i] + LATENCY_NS
            sent[i + 1] = recv[i + 1] + STEP_NS
        reply[n - 1] = recv[n - 1] + STEP_NS
        for i in range(n - 2, -1, -1):
            answered[i] = reply[i + 1] + LATENCY_NS
            reply[i] = answered[i] + STEP_NS
        for i in range(n - 1):  # the request from service i to i + 1
            span = f"{i + 1:02x}{k + 1:014x}"
            client, server = res[i], res[i + 1]
            res[i] += 1
            res[i + 1] += 1
            recs[i].append(
                f'rec resource {client} kind="rpc" name="GET /step" trace_id="{trace_id}" '
                f'span_id="{span}" protocol="http" method="GET" target="/step"'
            )
            recs[i + 1].append(
                f'rec resource {server} kind="rpc" name="GET /step" trace_id="{trace_id}" '
                f'span_id="ff{k + 1:014x}" parent_span_id="{span}" method="GET" target="/step"'
            )
            ci, si = clocks[i], clocks[i + 1]
            evs[i] += [
                (ci.mono(sent[i]), f"msg.send u=1 r={client}"),
                (ci.mono(sent[i]) + 1, f"unit.block u=1 r={client} a=7"),
                (ci.mono(answered[i]), f"rpc.response u=1 r={client} a=200"),
            ]
            evs[i + 1] += [
                (si.mono(recv[i + 1]), f"msg.recv u=1 r={server}"),
                (si.mono(reply[i + 1]), f"rpc.reply u=1 r={server} a=200"),
            ]
    end = start_ns + rounds * period_ns
    for i, clock in enumerate(clocks):
        evs[i].append((clock.mono(end), "unit.end u=1"))
        head = process(f"c{i}", 100 + i, names[i], boot=f"boot-{i}", run_root=int(i == 0))
        lines = [f"ev {m} {text}" for m, text in sorted(evs[i])]
        write_trace(folder / f"{names[i]}.wtrace", chunk(head, *recs[i], *lines))
    return folder


def write_star(
    folder: Path,
    clocks: list[Clock],
    *,
    rounds: int,
    period_ns: int,
    start_ns: int = 1_000_000_000,
) -> Path:
    """Write a run where service 0 calls services 1, 2, ... in turn each round."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(clocks)
    recs: list[list[str]] = [[] for _ in range(n)]
    evs: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for i, clock in enumerate(clocks):
        evs[i] += [
            (clock.mono(0), f"clock.anchor a={clock.raw(0)}"),
            (clock.mono(1_000), "unit.start u=1"),
        ]
    ref = clocks[0]
    for k in range(rounds):
        for j in range(1, n):
            r = k * n + j  # unique per (round, callee) on both sides
            t = start_ns + k * period_ns + (j - 1) * 4 * LATENCY_NS
            trace_id, span = f"{r:032x}", f"{r:016x}"
            recs[0].append(
                f'rec resource {r} kind="rpc" name="GET /leaf" trace_id="{trace_id}" '
                f'span_id="{span}" protocol="http" method="GET" target="/leaf"'
            )
            recs[j].append(
                f'rec resource {r} kind="rpc" name="GET /leaf" trace_id="{trace_id}" '
                f'span_id="ff{r:014x}" parent_span_id="{span}" method="GET" target="/leaf"'
            )
            recv, reply = t + LATENCY_NS, t + LATENCY_NS + STEP_NS
            evs[0] += [
                (ref.mono(t), f"msg.send u=1 r={r}"),
                (ref.mono(reply + LATENCY_NS), f"rpc.response u=1 r={r} a=200"),
            ]
            evs[j] += [
                (clocks[j].mono(recv), f"msg.recv u=1 r={r}"),
                (clocks[j].mono(reply), f"rpc.reply u=1 r={r} a=200"),
            ]
    for i in range(n):
        head = process(f"c{i}", 100 + i, f"svc{i}", boot=f"boot-{i}", run_root=int(i == 0))
        lines = [f"ev {m} {text}" for m, text in sorted(evs[i])]
        write_trace(folder / f"svc{i}.wtrace", chunk(head, *recs[i], *lines))
    return folder
