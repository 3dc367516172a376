"""Structural delay: rhythms found from the consumer's own behaviour (timed waits, silent
gaps), their kinds, what they explain, and only when there is a rhythm."""

from __future__ import annotations

from pathlib import Path

from golden.test_golden import GOLDEN, build_run
from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths
from willowisp.analysis.critical_path import critical_paths
from willowisp.analysis.engine import Analysis
from willowisp.analysis.finding import Finding
from willowisp.analysis.structural import BATCH_WINDOW, POLL, TIMER, detect

ANCHOR = f"ev 0 clock.anchor a={WALL0}"
MS = 1_000_000
HEAD = [
    'rec location 1 file="/srv/worker.py" line=5',
    'rec location 2 file="/srv/worker.py" line=20',
    'rec location 3 file="/srv/worker.py" line=21',
    'rec location 4 file="/srv/worker.py" line=30',
    'rec unit 1 kind="thread" name="consumer" parent=0',
    'rec unit 2 kind="thread" name="producer" parent=0',
    'rec resource 1 kind="queue" name="jobs" loc=1',
    'rec resource 2 kind="event" name="tick" loc=1',
    'rec resource 3 kind="lock" name="mutex" loc=1',
]


def _consumer(
    tmp_path: Path,
    pauses: list[int],
    puts: list[int],
    *,
    recorded: bool = True,
    look_ns: int = 200_000,
) -> Analysis:
    """A consumer of the jobs queue that pauses (a timed wait that times out, or a silent
    sleep), then looks (the queue's mutex) and takes what the producer put since its last
    look; ``pauses`` are the pause lengths, ``puts`` the producer's put times."""
    events: list[tuple[int, str]] = [(1000, "unit.start u=1"), (1000, "unit.start u=2")]
    t = 1 * MS
    waiting = list(range(len(puts)))
    for k, pause in enumerate(pauses):
        if recorded:
            events.append((t, "unit.block u=1 r=2 a=5 l=2"))
            events.append((t + pause, "unit.wake u=1 r=2 a=1 l=2"))
        look = t + pause + 10_000
        events.append((look, "lock.acquired u=1 r=3 l=3"))
        events.append((look + 5_000, "lock.release u=1 r=3 l=3"))
        x = look + 10_000
        for m in [m for m in waiting if puts[m] < look]:
            waiting.remove(m)
            events.append((x, f"queue.get u=1 r=1 a={100 + m} l=3"))
            x += 20_000
        t = max(x, look + look_ns)
        del k
    events += [(p, f"queue.put u=2 r=1 a={100 + m} l=4") for m, p in enumerate(puts)]
    lines = [f"ev {at} {what}" for at, what in sorted(events)]
    return analyze_run(
        tmp_path, svc=chunk(process("aa", 1, "svc", run_root=1), *HEAD, ANCHOR, *lines)
    )


def _structural(a: Analysis) -> list[Finding]:
    return [f for f in a.findings if f.kind == "structural-delay"]


def test_a_timed_poll_is_found_and_explains_what_waited(tmp_path: Path) -> None:
    """Timed waits of one length (± jitter) followed by gets: a poll with that period, and
    each item's wait until the next look is what it explains."""
    pauses = [50 * MS, 50 * MS + 30_000, 50 * MS - 20_000, 50 * MS, 50 * MS + 10_000]
    a = _consumer(tmp_path, pauses, [20 * MS, 130 * MS])
    (p,) = detect(a.causality).patterns
    assert (p.kind, p.period_ns, p.jitter_ns, p.cycles, p.recorded) == (
        POLL,
        50 * MS,
        30_000,
        5,
        True,
    )
    (f,) = _structural(a)
    assert f.severity == "info"
    assert f.summary.startswith("structural-delay: svc's consumer polls queue jobs every 50.0 ms")
    assert "2 items waited on average" in f.summary
    assert {r.name for r in f.resources} == {"tick", "jobs"}


def test_batches_are_a_batch_window(tmp_path: Path) -> None:
    """The same rhythm taking two or more items per look is a batch window."""
    pauses = [40 * MS] * 5
    puts = [5 * MS, 10 * MS, 50 * MS, 60 * MS, 90 * MS, 100 * MS]
    (p,) = detect(_consumer(tmp_path, pauses, puts).causality).patterns
    assert p.kind == BATCH_WINDOW and p.burst_median == 2


def test_uneven_or_few_pauses_are_no_rhythm(tmp_path: Path) -> None:
    """Timed waits of scattered lengths, or only three of one length, make no pattern."""
    uneven = [10 * MS, 35 * MS, 18 * MS, 60 * MS, 22 * MS]
    assert detect(_consumer(tmp_path / "a", uneven, [5 * MS]).causality).patterns == ()
    few = [50 * MS] * 3
    assert detect(_consumer(tmp_path / "b", few, [5 * MS]).causality).patterns == ()


def test_a_silent_sleep_poll_is_found_when_items_waited(tmp_path: Path) -> None:
    """No recorded wait (time.sleep): regular silent gaps before the looks still make a
    poll, because the items it took had waited a good part of the period."""
    pauses = [30 * MS] * 6
    a = _consumer(tmp_path, pauses, [12 * MS, 70 * MS, 140 * MS], recorded=False)
    (p,) = detect(a.causality).patterns
    assert (p.kind, p.recorded) == (POLL, False)
    assert abs(p.period_ns - 30 * MS - 215_000) <= 20_000  # the sleep plus the look's work
    (f,) = _structural(a)
    assert "with no event, a sleep" in f.explanation[0]


def test_silent_gaps_whose_items_did_not_wait_are_no_poll(tmp_path: Path) -> None:
    """A consumer silent between items that a periodic producer sends, taking each one
    at once (blocked in a call the agent does not hook): regular gaps, but nothing waited
    for a rhythm of the consumer's, so no pattern."""
    puts = [k * 30 * MS + 5 * MS for k in range(6)]
    lines = [f"ev {p} queue.put u=2 r=1 a={100 + m} l=4" for m, p in enumerate(puts)]
    lines += [f"ev {p + 50_000} queue.get u=1 r=1 a={100 + m} l=3" for m, p in enumerate(puts)]
    a = analyze_run(
        tmp_path,
        svc=chunk(process("aa", 1, "svc", run_root=1), *HEAD, ANCHOR, *sorted(lines, key=_time)),
    )
    assert detect(a.causality).patterns == ()


def _time(line: str) -> int:
    return int(line.split()[1])


def test_a_timer_inside_requests_is_reported_and_structural_on_the_path(tmp_path: Path) -> None:
    """A handler that backs off 20 ms (a timed wait) before retrying, in each of four
    requests: a timer, its waits are structural on the critical path, and the finding says
    what share of the requests' latency they are."""
    lines = ['rec unit 1 kind="thread" name="handler" parent=0']
    evs = ["ev 1000 unit.start u=1"]
    for k in range(4):
        t0 = (k + 1) * 100 * MS
        trace = f"{k + 1:02d}" * 16
        lines.append(
            f'rec resource {10 + k} kind="rpc" name="POST /pay" trace_id="{trace}" '
            f'span_id="{trace[:14]}01" sampled=1 protocol="http" library="http.server" '
            'method="POST" target="/pay"'
        )
        evs += [
            f"ev {t0} msg.recv u=1 r={10 + k} l=1",
            f"ev {t0 + 1 * MS} unit.block u=1 r=2 a=5 l=2",
            f"ev {t0 + 21 * MS} unit.wake u=1 r=2 a=1 l=2",
            f"ev {t0 + 25 * MS} rpc.reply u=1 r={10 + k} a=200 l=3",
        ]
    records = [*HEAD[:4], *HEAD[7:8], *lines]  # the locations and the tick event
    a = analyze_run(
        tmp_path, svc=chunk(process("aa", 1, "svc", run_root=1), *records, ANCHOR, *evs)
    )
    (p,) = detect(a.causality).patterns
    assert (p.kind, p.period_ns) == (TIMER, 20 * MS)
    (f,) = _structural(a)
    assert f.summary == (
        "structural-delay: svc's handler pauses 20.0 ms before acting, 4 times inside "
        "operations: 80.0 ms, 80% of their latency"
    )
    # a pause on the way, not a consumer's polling: no "period" advice (the QA's Go handler
    # sleeping 5 ms was told to "block on the source")
    assert f.explanation[-1].startswith("a fixed pause in the operations' path"), f.explanation
    assert not any("consumer" in line for line in f.explanation)
    path = critical_paths(a.causality, gaps=detect(a.causality).gaps)[0]
    assert [(s.kind, s.duration_ns) for s in path.segments] == [
        ("running", 1 * MS),
        ("structural", 20 * MS),
        ("running", 4 * MS),
    ]


def test_the_finding_id_survives_a_rerun(tmp_path: Path) -> None:
    """The same poll recorded again with other pids, process ids and times has the same
    finding id."""
    case = GOLDEN / "cp_polling_consumer"
    again = tmp_path / "again"
    again.mkdir()
    for f in case.glob("*.wtxt"):
        text = f.read_text().replace("pid=5500", "pid=9500").replace("b1b1b000", "b1b1b999")
        lines = [
            f"ev {int(x.split()[1]) + 7_777_777} {x.split(' ', 2)[2]}" if x.startswith("ev ") else x
            for x in text.splitlines()
        ]
        (again / f.name).write_text("\n".join(lines) + "\n")
    ids = [
        {f.id for f in _structural(analyze_paths([build_run(folder, tmp_path / name)]))}
        for folder, name in ((case, "a"), (again, "b"))
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_a_get_with_a_timeout_is_no_rhythm(tmp_path: Path) -> None:
    """A consumer blocked in ``queue.get(timeout=0.05)``: its timeouts are regular, but an
    item ends the wait the moment it comes, so nothing waits for it: no pattern."""
    lines = []
    t = 1 * MS
    for k in range(6):
        lines.append(f"ev {t} unit.block u=1 r=1 a=3 l=2")
        if k in (2, 4):  # an item comes 10 ms into this wait and ends it
            lines.append(f"ev {t + 10 * MS} queue.put u=2 r=1 a={100 + k} l=4")
            lines.append(f"ev {t + 10 * MS + 30_000} queue.get u=1 r=1 a={100 + k} l=2")
            t += 11 * MS
        else:
            lines.append(f"ev {t + 50 * MS} unit.wake u=1 r=1 a=1 l=2")
            t += 50 * MS + 20_000
    a = analyze_run(
        tmp_path,
        svc=chunk(process("aa", 1, "svc", run_root=1), *HEAD, ANCHOR, *sorted(lines, key=_time)),
    )
    assert detect(a.causality).patterns == ()


def test_idle_pauses_after_a_message_are_no_timer_finding(tmp_path: Path) -> None:
    """After handling its last message a consumer keeps waking from a timed wait: the
    pauses belong to that message's operation (until a next receive) but come after its
    end, so they delay nothing: a timer rhythm, no finding."""
    trace = "c3" * 16
    lines = [
        "ev 1000 unit.start u=1",
        "ev 2000000 msg.recv u=1 r=9 l=3",
        "ev 2100000 lock.acquired u=1 r=3 l=3",
        "ev 2200000 lock.release u=1 r=3 l=3",
    ]
    t = 3 * MS
    for _ in range(5):
        lines += [
            f"ev {t} unit.block u=1 r=2 a=5 l=2",
            f"ev {t + 50 * MS} unit.wake u=1 r=2 a=1 l=2",
        ]
        t += 50 * MS + 100_000
    message = (
        f'rec resource 9 kind="message" name="recv jobs" trace_id="{trace}" '
        f'span_id="{trace[:14]}02" sampled=1 protocol="redis" destination="jobs"'
    )
    a = analyze_run(
        tmp_path, svc=chunk(process("aa", 1, "svc", run_root=1), *HEAD, message, ANCHOR, *lines)
    )
    (p,) = detect(a.causality).patterns
    assert p.kind == TIMER
    assert _structural(a) == []


def test_a_timer_rhythm_with_no_operation_at_all_is_no_finding(tmp_path: Path) -> None:
    """A thread that only sleeps 20 ms at a time, in a trace with no request or message
    (no operation): a timer rhythm, but nothing it delays, so no finding and no crash."""
    lines = ['rec unit 1 kind="thread" name="ticker" parent=0']
    evs = ["ev 1000 unit.start u=1"]
    for k in range(6):
        t0 = (k + 1) * 30 * MS
        evs += [
            f"ev {t0} unit.block u=1 r=2 a=5 l=2",
            f"ev {t0 + 20 * MS} unit.wake u=1 r=2 a=1 l=2",
        ]
    records = [*HEAD[:4], *HEAD[7:8], *lines]
    a = analyze_run(
        tmp_path, svc=chunk(process("aa", 1, "svc", run_root=1), *records, ANCHOR, *evs)
    )
    assert [p.kind for p in detect(a.causality).patterns] == [TIMER]
    assert _structural(a) == []
