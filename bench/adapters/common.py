"""The command protocol every adapter speaks (Python peers run it in bench/.venv-peers).

    setup   DSN                      install the system's schema
    enqueue DSN N bulk               time N enqueues, 1,000 per call
    produce DSN SECONDS BATCH        enqueue for SECONDS, BATCH jobs per call
    pace    DSN SECONDS BATCH RATE   enqueue for SECONDS, BATCH jobs per call, RATE jobs/s on
                                     a fixed schedule; prints `SENT n epoch` after each call
    turns   DSN CHUNK                one call per job, in chunks on command: prints `READY`
                                     after one job outside the timing, then for each `go` line
                                     on stdin times CHUNK jobs and prints `DONE seconds`; stops
                                     at `end` (bench A runs every system's chunks in turns)
    probe   DSN N GAP_MS             one job at a time; prints `SENT k epoch` after each commit
    worker  DSN [--trace]            prints `READY epoch`, works until SIGTERM; with --trace the
                                     job body prints `START k epoch`, otherwise it does nothing

Results are one JSON object on the last line of stdout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

BULK = 1000


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def started(k: object) -> None:
    say(f"START {k} {time.time():.6f}")


async def _main(impl, argv: list[str]) -> None:
    cmd, dsn = argv[0], argv[1]
    if cmd == "setup":
        await impl.setup(dsn)
        say(json.dumps({"ok": True}))
    elif cmd == "enqueue":  # one call per job: `turns`
        n = int(argv[2])
        async with impl.producer(dsn) as p:
            t0 = time.perf_counter()
            for start in range(0, n, BULK):
                await p.many(range(start, min(n, start + BULK)))
            dt = time.perf_counter() - t0
        say(json.dumps({"n": n, "seconds": dt}))
    elif cmd == "produce":
        seconds, batch = float(argv[2]), int(argv[3])
        n = 0
        async with impl.producer(dsn) as p:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                if batch == 1:
                    await p.one(n)
                else:
                    await p.many(range(n, n + batch))
                n += batch
            dt = time.perf_counter() - t0
        say(json.dumps({"n": n, "seconds": dt}))
    elif cmd == "pace":
        seconds, batch, rate = float(argv[2]), int(argv[3]), float(argv[4])
        n = 0
        async with impl.producer(dsn) as p:
            t0 = time.perf_counter()
            while (now := time.perf_counter()) - t0 < seconds:
                if (due := t0 + n / rate) > now:
                    await asyncio.sleep(due - now)
                await p.many(range(n, n + batch))
                n += batch
                say(f"SENT {n} {time.time():.6f}")
            dt = time.perf_counter() - t0
        say(json.dumps({"n": n, "seconds": dt}))
    elif cmd == "turns":
        chunk, k = int(argv[2]), 0
        loop = asyncio.get_running_loop()
        async with impl.producer(dsn) as p:
            await p.one(-1)  # connect and warm up outside the timing
            say("READY")
            while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
                t0 = time.perf_counter()
                for _ in range(chunk):
                    await p.one(k)
                    k += 1
                say(f"DONE {time.perf_counter() - t0:.6f}")
        say(json.dumps({"n": k}))
    elif cmd == "probe":
        n, gap = int(argv[2]), float(argv[3]) / 1000
        async with impl.producer(dsn) as p:
            for k in range(n):
                await p.one(k)
                say(f"SENT {k} {time.time():.6f}")
                await asyncio.sleep(gap)
        say(json.dumps({"n": n}))
    elif cmd == "worker":
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await impl.work(dsn, "--trace" in argv, stop)
    else:
        raise SystemExit(f"unknown command {cmd}")


def main(impl) -> None:
    asyncio.run(_main(impl, sys.argv[1:]))
