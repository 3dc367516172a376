"""Two asyncio tasks restock and sell, each taking two asyncio.Locks in opposite order; an
asyncio.Event makes both hold their first lock before reaching for the second."""

import asyncio


async def main() -> None:
    shelf_lock = asyncio.Lock()
    ledger_lock = asyncio.Lock()
    first_taken = 0
    both = asyncio.Event()

    async def take_first(lock: asyncio.Lock) -> None:
        nonlocal first_taken
        await lock.acquire()
        first_taken += 1
        if first_taken == 2:
            both.set()
        await both.wait()

    async def restock() -> None:
        await take_first(shelf_lock)
        async with ledger_lock:
            pass

    async def sell() -> None:
        await take_first(ledger_lock)
        async with shelf_lock:
            pass

    await asyncio.gather(
        asyncio.create_task(restock(), name="restock"), asyncio.create_task(sell(), name="sell")
    )


asyncio.run(main())
