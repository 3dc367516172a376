"""main awaits an asyncio.gather of three tasks, then works 3 ms: leaf3 ends last, so a
delay of leaf3 moves main's end (and the run's) by as much."""

import asyncio
import time


async def leaf(n: int) -> None:
    await asyncio.sleep(0.01 * n)
    time.sleep(0.002)


async def main() -> None:
    tasks = [asyncio.create_task(leaf(n), name=f"leaf{n}") for n in (1, 2, 3)]
    await asyncio.gather(*tasks)
    time.sleep(0.003)


asyncio.run(main())
