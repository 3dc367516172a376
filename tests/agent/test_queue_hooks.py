"""The queue hooks: one event per put and per get, paired by item token whatever the order."""

from __future__ import annotations

import pytest
from tracekit import read_run, run_program


@pytest.mark.parametrize("cls", ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"])
def test_put_get_tokens_pair_items(tmp_path, cls):
    """Every get carries the token of the put of the very item it returned."""
    out = str(tmp_path / "run")
    r = run_program(
        f"""
        import queue, threading
        jobs = queue.{cls}()
        got = []
        def consumer():
            for _ in range(20):
                got.append(jobs.get())
        t = threading.Thread(target=consumer, name="consumer")
        for i in [5, 3, 9, 1, 7, 2, 8, 0, 6, 4] * 2:
            jobs.put(i)
        t.start(); t.join()
        print(",".join(map(str, got)))
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    got = [int(x) for x in r.stdout.strip().split(",")]
    p = read_run(out)["prog"]
    q = p.resource("jobs")
    assert p.resources[q]["kind"] == "queue"
    puts = [e for e in p.events if e.kind == "queue.put" and e.res == q]
    gets = [e for e in p.events if e.kind == "queue.get" and e.res == q]
    assert len(puts) == len(gets) == 20
    put_order = [5, 3, 9, 1, 7, 2, 8, 0, 6, 4] * 2
    value_of_token = {e.arg: put_order[i] for i, e in enumerate(puts)}
    assert all(e.arg for e in gets)
    assert [value_of_token[e.arg] for e in gets] == got
    assert len({e.arg for e in gets}) == 20
    assert {p.where(e) for e in puts} == {"prog.py:10"}
    assert {p.where(e) for e in gets} == {"prog.py:7"}


def test_blocking_get_records_wait(tmp_path):
    """A get on an empty queue writes unit.block, and its queue.get ends the wait."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import queue, threading
        mailbox = queue.Queue()
        def consumer():
            mailbox.get()
        t = threading.Thread(target=consumer, name="consumer")
        t.start()
        while not mailbox.not_empty._waiters:
            pass
        mailbox.put("x")
        t.join()
        try:
            mailbox.get(timeout=0.01)
        except queue.Empty:
            print("empty")
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    q = p.resource("mailbox")
    c = p.unit_named("consumer")
    assert [e.kind for e in p.of_unit(c) if e.res == q] == ["unit.block", "queue.get"]
    main = p.unit_named("MainThread")
    tail = [(e.kind, e.arg) for e in p.of_unit(main) if e.res == q][-2:]
    assert tail == [("unit.block", 3), ("unit.wake", 1)]  # reason get, outcome timeout
