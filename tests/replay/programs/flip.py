"""Two threads and one order record. The writer updates order:7 after 5 ms of work; the
reader reads it after 40 ms. Nothing but time orders them (a race that happened to go the
safe way). With ``fixed`` the reader waits for the writer's event: causality orders them."""

import sys
import threading
import time

import willowisp

written = threading.Event()
fixed = sys.argv[1:] == ["fixed"]


def writer() -> None:
    time.sleep(0.005)
    willowisp.access("order:7", "write")
    written.set()


def reader() -> None:
    if fixed:
        written.wait()
    else:
        time.sleep(0.04)
    willowisp.access("order:7", "read")


threads = [
    threading.Thread(target=writer, name="writer"),
    threading.Thread(target=reader, name="reader"),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
