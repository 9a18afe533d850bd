"""Chancy adapter (AsyncExecutor). Finished jobs stay, state 'succeeded'."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from chancy import Chancy, Queue, Worker, job
from common import main, say, started

CONCURRENCY = 100
QUEUE = Queue(
    name="default",
    concurrency=CONCURRENCY,
    executor="chancy.executors.asyncex.AsyncExecutor",
    polling_interval=1,
    eager_polling=True,
)


@job(queue="default")
async def noop(k: int = 0) -> None:
    if os.environ.get("BENCH_TRACE"):
        started(k)


class Impl:
    async def setup(self, dsn: str) -> None:
        async with Chancy(dsn, no_default_plugins=True) as chancy:
            await chancy.migrate()
            await chancy.declare(QUEUE, upsert=True)

    @contextlib.asynccontextmanager
    async def producer(self, dsn: str):
        async with Chancy(
            dsn, no_default_plugins=True, min_connection_pool_size=1, max_connection_pool_size=1
        ) as chancy:

            class P:
                async def one(self, k: int) -> None:
                    await chancy.push(noop.job.with_kwargs(k=k))

                async def many(self, ks) -> None:
                    jobs = [noop.job.with_kwargs(k=k) for k in ks]
                    async for _ in chancy.push_many(jobs, batch_size=len(jobs)):
                        pass

            yield P()

    async def work(self, dsn: str, trace: bool, stop: asyncio.Event) -> None:
        if trace:
            os.environ["BENCH_TRACE"] = "1"
        logging.basicConfig(level=os.environ.get("BENCH_LOG", "WARNING"))
        logging.getLogger("chancy").setLevel(os.environ.get("BENCH_LOG", "WARNING"))
        log = logging.getLogger("bench.chancy")
        log.setLevel(os.environ.get("BENCH_LOG", "WARNING"))
        async with (
            Chancy(dsn, no_default_plugins=True, log=log) as chancy,
            Worker(chancy, register_signal_handlers=False) as w,
        ):
            say(f"READY {time.time():.6f}")
            await stop.wait()
            await w.stop()


if __name__ == "__main__":
    # Jobs are found by import path: push them as peer_chancy.noop, not __main__.noop.
    import peer_chancy

    main(peer_chancy.Impl())
