"""procrastinate adapter (PsycopgConnector). Finished jobs stay, status 'succeeded'."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from common import main, say, started
from procrastinate import App, PsycopgConnector

CONCURRENCY = 10  # 1, 10 and 50 were tried; 10 was fastest for no-op jobs

# The DSN comes from the command line (common.py's protocol); a producer uses one connection.
_argv = [*sys.argv[1:], "", ""]
_pool = {"min_size": 1, "max_size": 1} if _argv[0] in ("enqueue", "produce", "probe") else {}
app = App(connector=PsycopgConnector(conninfo=_argv[1], **_pool))
TRACE = False


@app.task(name="noop")
async def noop(k: int = 0) -> None:
    if TRACE:
        started(k)


class Impl:
    async def setup(self, dsn: str) -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    @contextlib.asynccontextmanager
    async def producer(self, dsn: str):

        class P:
            async def one(self, k: int) -> None:
                await noop.defer_async(k=k)

            async def many(self, ks) -> None:
                await noop.batch_defer_async(*({"k": k} for k in ks))

        async with app.open_async():
            yield P()

    async def work(self, dsn: str, trace: bool, stop: asyncio.Event) -> None:
        global TRACE
        TRACE = trace
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
        async with app.open_async():
            task = asyncio.create_task(
                app.run_worker_async(
                    concurrency=CONCURRENCY,
                    wait=True,
                    listen_notify=True,
                    install_signal_handlers=False,
                )
            )
            say(f"READY {time.time():.6f}")
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)


if __name__ == "__main__":
    main(Impl())
