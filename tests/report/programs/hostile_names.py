"""A program that names everything it can the way an attacker would, then deadlocks.

It reproduces the situation the HTML report must survive: thread names, lock names (from
this file's name, which the test chooses: the agent names a lock that no assignment names
``lock@<file>:<line>``) and shared-data names that carry markup, quotes, ampersands,
control characters and a very long string. Two threads each take one lock, meet at a
barrier, write one shared record (a race: nothing orders the two writes) and reach for the
other's lock: a deadlock that hangs every time, so the test kills it once the trace shows
both threads blocked.
"""

import threading

import willowisp

HOSTILE_DATA = "<script>alert('data')</script> & \"quoted\" 'single'"
NAMES = (
    "<script>alert(1)</script>",
    "\"onload=alert(2) x='&amp; \x1b[2J\x07" + "L" * 5000,
)
LOCKS: list[threading.Lock] = []
LOCKS.append(threading.Lock())
LOCKS.append(threading.Lock())
both_hold_one = threading.Barrier(2)


def transfer(first: int) -> None:
    with LOCKS[first]:
        both_hold_one.wait()
        willowisp.access(HOSTILE_DATA, "write")
        with LOCKS[1 - first]:
            pass


for n, name in enumerate(NAMES):
    threading.Thread(target=transfer, args=(n,), name=name).start()
