"""Sixteen threads in a ring of sixteen locks: thread i holds lock i and wants lock i+1.

A dining-philosophers deadlock wider than the timeline draws (its lanes are capped), so
the report must say how many units it left out. A barrier makes every thread hold its
first lock before reaching for the next, so it hangs every time; the test kills it once
the trace shows the last lock waited on.
"""

import threading

N = 16
RING: list[threading.Lock] = []
for _ in range(N):
    RING.append(threading.Lock())
all_hold_one = threading.Barrier(N)


def philosopher(i: int) -> None:
    with RING[i]:
        all_hold_one.wait()
        with RING[(i + 1) % N]:
            pass


for i in range(N):
    threading.Thread(target=philosopher, args=(i,), name=f"philosopher-{i}").start()
