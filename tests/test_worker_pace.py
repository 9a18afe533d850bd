"""When the control thread acts (pgsched/worker/control.py Pace), with the time passed in."""

from __future__ import annotations

import pytest

from pgsched.config import Settings
from pgsched.worker import reaper
from pgsched.worker.control import Pace

PACED = Settings(heartbeat_interval=0.1, idle_heartbeat_interval=1.0, heartbeat_timeout=3)


def test_the_first_beat_comes_within_one_heartbeat_interval_of_start() -> None:
    """It tells a new worker the fleet's size, which paces its recovery runs."""
    pace = Pace(PACED, now=50.0, pid=1)
    assert pace.next_beat(busy=False) == pytest.approx(50.1)
    assert pace.next_beat(busy=True) <= 50.1


def test_an_idle_worker_beats_on_the_idle_pace_and_a_busy_one_on_the_busy_pace() -> None:
    pace = Pace(PACED, now=0.0, pid=1)
    pace.last_beat = 10.0
    assert pace.next_beat(busy=False) == pytest.approx(11.0)
    assert pace.next_beat(busy=True) == pytest.approx(10.1)


def test_the_control_thread_never_waits_longer_than_a_heartbeat_interval() -> None:
    """So a worker that turns busy while idle beats on the busy pace within one interval."""
    pace = Pace(PACED, now=0.0, pid=1)
    pace.last_beat = 10.0
    pace.recovery.next_periodic = 99.0
    assert pace.wake_at(10.0, busy=False) == pytest.approx(10.1)


def test_the_idle_pace_defaults_to_a_third_of_the_heartbeat_timeout() -> None:
    pace = Pace(Settings(heartbeat_interval=0.2, heartbeat_timeout=9), now=0.0, pid=1)
    pace.last_beat = 0.0
    assert pace.next_beat(busy=False) == pytest.approx(3.0)


def test_pruning_catches_up_while_each_run_finds_a_full_batch() -> None:
    pace = Pace(PACED, now=0.0, pid=3)
    assert pace.next_prune == pytest.approx(5.0)  # 2 s + pid % 8: spread over a fleet
    pace.pruned(5.0, reaper.PRUNE_BATCH)
    assert pace.next_prune == pytest.approx(5.0 + reaper.PRUNE_CATCH_UP)
    pace.pruned(6.0, reaper.PRUNE_BATCH - 1)
    assert pace.next_prune == pytest.approx(6.0 + reaper.PRUNE_EVERY)
