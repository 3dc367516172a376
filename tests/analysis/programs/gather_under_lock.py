"""main holds a lock while it awaits a gather of tasks that need that lock: a deadlock
through the gather, broken after 0.3 s by asyncio.timeout (so the program ends)."""

import asyncio


async def child(lock: asyncio.Lock) -> None:
    async with lock:  # needs the lock the parent holds while it waits for the children
        pass


async def main() -> None:
    shared_lock = asyncio.Lock()
    async with shared_lock:
        kids = [asyncio.create_task(child(shared_lock), name=f"kid{i}") for i in range(2)]
        try:
            async with asyncio.timeout(0.3):
                await asyncio.gather(*kids)
        except TimeoutError:
            print("timed out")


asyncio.run(main())
