"""Two threads take one lock. ``early`` waits for main's go-ahead (an event main sets after
20 ms of work), then takes the lock; ``late`` waits on an event nobody sets, times out after
200 ms, then takes it. The recording grants early first; only late's timeout, a wait that no
recorded event ends, decides that. The demo's ledger has the same shape: a Java worker
parked with a timeout, then taking a ReentrantLock the dispatcher also takes."""

import threading
import time

the_lock = threading.Lock()
go = threading.Event()
never = threading.Event()


def early() -> None:
    go.wait()
    with the_lock:
        time.sleep(0.002)


def late() -> None:
    never.wait(0.2)
    with the_lock:
        time.sleep(0.002)


threads = [
    threading.Thread(target=early, name="early"),
    threading.Thread(target=late, name="late"),
]
for t in threads:
    t.start()
time.sleep(0.02)
go.set()
for t in threads:
    t.join()
