"""The service-like workload of the agent-overhead benchmark (run as a script).

4 worker threads take items from a queue.Queue, do ~10 µs of real work (a JSON round trip
and a hash), update a shared dict under a lock and hand the result back through a second
queue; then an asyncio fan-out of tasks doing the same work and sharing a cache behind an
asyncio.Lock. Prints its own wall time in seconds on the last line.
"""

import asyncio
import hashlib
import json
import queue
import sys
import threading
import time

ITEMS = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
TASKS = int(sys.argv[2]) if len(sys.argv) > 2 else 5000


def work(i: int) -> str:
    doc = json.loads(
        json.dumps({"id": i, "sku": f"sku-{i % 97}", "qty": i % 7, "tags": ["a", "b"]})
    )
    return hashlib.sha1(repr(doc).encode()).hexdigest()


def threaded() -> None:
    inbox: queue.Queue[int | None] = queue.Queue()
    outbox: queue.Queue[str] = queue.Queue()
    totals: dict[int, str] = {}
    totals_lock = threading.Lock()

    def worker() -> None:
        while True:
            item = inbox.get()
            if item is None:
                return
            digest = work(item)
            with totals_lock:
                totals[item % 64] = digest
            outbox.put(digest)

    workers = [threading.Thread(target=worker, name=f"worker-{n}") for n in range(4)]
    for w in workers:
        w.start()
    for i in range(ITEMS):
        inbox.put(i)
    for _ in range(ITEMS):
        outbox.get()
    for _ in workers:
        inbox.put(None)
    for w in workers:
        w.join()


async def fan_out() -> None:
    cache: dict[int, str] = {}
    cache_lock = asyncio.Lock()

    async def one(i: int) -> str:
        digest = work(i)
        async with cache_lock:
            cache[i % 64] = digest
        await asyncio.sleep(0)
        return digest

    await asyncio.gather(*(one(i) for i in range(TASKS)))


t0 = time.perf_counter()
threaded()
asyncio.run(fan_out())
print(f"{time.perf_counter() - t0:.6f}")
