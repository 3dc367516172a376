"""asyncio tasks named A and B next to the runtime's own units (MainThread, Task-N): a
delay on unit:A must name the task A alone, not every unit with an "a" in its name."""

import asyncio


async def work(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


async def main() -> None:
    await asyncio.gather(
        asyncio.create_task(work(30), name="A"), asyncio.create_task(work(10), name="B")
    )


asyncio.run(main())
