"""PGQueuer adapter (asyncpg driver, its documented fastest). Jobs are deleted on completion."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import asyncpg
from common import main, say, started
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

BATCH = 100  # dequeue batch size; 10 (the default) and 100 were tried, 100 was faster


class Impl:
    async def setup(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        await Queries(AsyncpgDriver(conn)).install()
        await conn.close()

    @contextlib.asynccontextmanager
    async def producer(self, dsn: str):
        conn = await asyncpg.connect(dsn)
        q = Queries(AsyncpgDriver(conn))

        class P:
            async def one(self, k: int) -> None:
                await q.enqueue("noop", str(k).encode())

            async def many(self, ks) -> None:
                ks = list(ks)
                await q.enqueue(["noop"] * len(ks), [str(k).encode() for k in ks], [0] * len(ks))

        try:
            yield P()
        finally:
            await conn.close()

    async def work(self, dsn: str, trace: bool, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            if trace:
                started(job.payload.decode())

        async def stopper() -> None:
            await stop.wait()
            qm.shutdown.set()

        task = asyncio.create_task(stopper())
        say(f"READY {time.time():.6f}")
        await qm.run(batch_size=BATCH, dequeue_timeout=timedelta(seconds=5))
        task.cancel()


if __name__ == "__main__":
    main(Impl())
