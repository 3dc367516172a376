"""A correct program: a thread pool fed through queues with a shared lock, a condition-based
hand-off, and an asyncio fan-out/join sharing a cache behind an asyncio.Lock. No deadlock,
no causality problem; thousands of events."""

import asyncio
import hashlib
import queue
import threading

orders: "queue.Queue[int | None]" = queue.Queue()
results: "queue.Queue[str]" = queue.Queue()
totals_lock = threading.Lock()
totals: dict[int, str] = {}
ready = threading.Condition()
batches_done = 0


def worker() -> None:
    global batches_done
    while True:
        item = orders.get()
        if item is None:
            break
        digest = hashlib.sha1(str(item).encode()).hexdigest()
        with totals_lock:
            totals[item % 16] = digest
        results.put(digest)
    with ready:
        batches_done += 1
        ready.notify_all()


workers = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(4)]
for w in workers:
    w.start()
for i in range(1500):
    orders.put(i)
for _ in range(1500):
    results.get()
for _ in workers:
    orders.put(None)
with ready:
    ready.wait_for(lambda: batches_done == len(workers))
for w in workers:
    w.join()


async def fan_out() -> int:
    cache: dict[int, str] = {}
    cache_lock = asyncio.Lock()

    async def price(i: int) -> str:
        async with cache_lock:
            cache[i % 8] = str(i)
        await asyncio.sleep(0)
        return cache[i % 8]

    done = await asyncio.gather(*(price(i) for i in range(300)))
    return len(done)


print(asyncio.run(fan_out()))
