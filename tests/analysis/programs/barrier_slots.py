"""Three threads each write their own slot, meet at a threading.Barrier, then read a
neighbour's slot: every write happens before every read, so no race. A fourth access,
after the barrier and unordered with the others' writes to "tally", is a real race."""

import threading

import willowisp

barrier = threading.Barrier(3)


def worker(i: int) -> None:
    willowisp.access(f"slot{i}", "write")
    barrier.wait()
    willowisp.access(f"slot{(i + 1) % 3}", "read")
    willowisp.access("tally", "write")  # after the barrier, by all three: unordered


threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
