"""`pgsched demo`: its workload on its own, and the whole run as a real process against a fresh
embedded server, which must leave no process behind."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from pgsched.client import Client
from pgsched.demo import Producer, sample_task
from pgsched.server import Cluster

PGSCHED = Path(sys.executable).parent / "pgsched"


def test_sample_tasks_are_valid_and_mixed() -> None:
    rng = random.Random(7)
    client = Client("postgresql://unused", check=False)  # spec() validates without connecting
    kinds: Counter[str] = Counter()
    for _ in range(500):
        task_type, payload, options = sample_task(rng)
        client.spec(task_type, payload, **options)
        if task_type == "dummy":
            kinds["fail" if payload.get("shouldFail") else "dummy"] += 1
            assert 100 <= payload["sleepDurationMs"] <= 6000
        else:
            kinds[task_type] += 1
        if task_type == "http":
            assert payload["url"].startswith("http://127.0.0.1:")  # local only
    assert set(kinds) == {"dummy", "fail", "noop", "http"}
    assert kinds["dummy"] > kinds["fail"] > 0


def test_producer_submits_until_stopped(dsn: str, conn: psycopg.Connection) -> None:
    from conftest import wait_until

    producer = Producer(dsn, rate=200.0, seed=1)
    producer.start()
    try:
        wait_until(lambda: len(producer.ids) >= 20, message="20 submissions")
    finally:
        producer.stop.set()
        producer.join(timeout=5)
    assert not producer.is_alive() and not producer.errors
    n = conn.execute(
        "SELECT count(*) FROM pgsched.all_tasks WHERE id = ANY(%s)", (producer.ids,)
    ).fetchone()[0]
    assert n == len(producer.ids) >= 20


# -- the whole demo --------------------------------------------------------------------------------


@pytest.fixture
def demo_home() -> Iterator[Path]:
    # Under /tmp and traversable: as root the server runs as the user 'pgsched'.
    home = Path(tempfile.mkdtemp(prefix="pgsched-demo-", dir="/tmp"))
    home.chmod(0o755)
    yield home
    Cluster(home).stop()  # only if a failed run left it running
    shutil.rmtree(home, ignore_errors=True)


def processes_of(home: Path) -> list[str]:
    """Processes that belong to this demo: the server (its data directory on the command line)
    and the workers (PGSCHED_HOME in their environment)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(p.info["cmdline"] or [])
            env_home = p.environ().get("PGSCHED_HOME") if p.pid != os.getpid() else None
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if str(home) in cmdline or env_home == str(home):
            found.append(f"{p.pid}: {cmdline}")
    return found


@pytest.mark.slow
def test_demo_runs_and_leaves_nothing_behind(demo_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGSCHED_")}
    env.pop("DATABASE_URL", None)
    env["PGSCHED_HOME"] = str(demo_home)
    r = subprocess.run(
        [str(PGSCHED), "demo", "--duration", "8", "--no-top"],
        cwd=demo_home,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    logs = "\n".join(
        f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}" for f in demo_home.glob("*.log")
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{logs}"
    assert "Traceback" not in r.stdout + r.stderr
    # status lines every few seconds, and tasks completing
    assert len(re.findall(r"^\[\S+\] submitted \d+", r.stdout, re.M)) >= 3, r.stdout
    summary = r.stdout.strip().splitlines()[-1]
    m = re.match(r"demo: (\d+) tasks submitted in \S+: (.*); workers stopped cleanly", summary)
    assert m, f"{r.stdout}\n{logs}"
    done = re.search(r"(\d+) succeeded", m[2])
    assert int(m[1]) >= 10 and done and int(done[1]) >= 5, summary
    assert summary.endswith("; server stopped")
    # the example alert rules were applied, their webhook pointed at the demo's receiver
    assert re.search(r"^alerts: examples/alerts\.yaml applied; its webhook posts to http://127",
                     r.stdout, re.M), r.stdout  # fmt: skip
    assert re.search(r"; \d+ alert notifications received", summary), summary
    # pgsched serve ran beside the workers, with a read token printed for it
    assert re.search(r"^API: http://127\.0\.0\.1:\d+ .* read token: pgs_\S+$", r.stdout, re.M)
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/ui/ ", r.stdout, re.M)
    # nothing left running: no worker, no server
    assert not Cluster(demo_home).running()
    assert processes_of(demo_home) == []
