"""Load weighting: how many tasks a worker holds at once.

A pulled queue balances fine-grained work by itself: a slow worker finishes its tasks later and
so claims less often. What it cannot balance is the batch a worker takes while faster peers
are busy: a worker on a loaded host that fills all its slots holds the last tasks of a burst
for twice as long as a free peer would. So the weighting scales the worker's *capacity*, not
each claim: a worker holds at most its part of the fleet's slots in proportion to CPU shares,

    capacity = round((my slots + peers' slots) x my share / (my share + peers' shares)),

bounded by its own concurrency and at least 1 while it is active and under its ceilings, so
it never stalls its queue. The peers are the live, active workers sharing a queue with it.
This is the split that finishes a burst as large as the fleet's slots soonest when each
worker's tasks share its CPUs. The portion is rarely a whole number, so the worker holds
whichever of the two nearest counts ends the burst sooner, counted in task-times: its own
tasks at its share, the rest at the peers' summed shares, each side taking more as it frees
up. A worker with half the CPU share of its only peer, both of 8 slots, holds 5 of a 16-task
burst, also when the peer's CPUs are a little busy (portion 5.5 at a peer's share of 0.95:
5 ends the burst at 11.6 task-times, 6 at 12; rounding would have taken 6). Scaling its own
slots by the ratio of shares (8 x 0.5) would give 4; the two workers would then finish their
first batches together and race for the last 4 tasks. On even hosts every worker keeps all
its slots (a share a few percent below its peers' still ends the burst soonest with them).

A CPU share is the part of the worker's CPUs that other processes leave idle, never below
one half: the kernel's fair scheduler gives a new busy thread about half of a CPU that one
other busy process holds. ``cpu_usage`` (the heartbeat's sample, pgsched/worker/load.py)
excludes the worker's own process and its own server backends, so a worker that keeps its
host busy does not see itself as load.

The peers' slots and shares come with each heartbeat (the ``heartbeat`` statement sums
them), since the load samples change only then. Effect and cost are measured
by bench F (bench/f_weighting.py): a burst of CPU-bound tasks on two workers, one of whose
CPU is held by another process, and the same with even hosts.

Tasks that wait rather than compute (I/O) do not slow each other down on a loaded CPU; a
fleet running mostly such tasks is better served with weighting off (``--no-load-weighting``).
"""

from __future__ import annotations

import math

MIN_SHARE = 0.5


def cpu_share(cpu_usage: float) -> float:
    """The CPU share of a worker whose CPUs other processes keep ``cpu_usage`` percent busy."""
    if not math.isfinite(cpu_usage):
        return MIN_SHARE
    return max(1.0 - cpu_usage / 100.0, MIN_SHARE)


def capacity(
    concurrency: int, cpu_usage: float, other_slots: int | None, other_shares: float | None
) -> int:
    """The most tasks a worker of ``concurrency`` slots holds at once, given its own load and
    the sums of the slots and CPU shares of its live active peers (None or 0: it is alone)."""
    if not other_slots or other_shares is None or not math.isfinite(other_shares):
        return concurrency
    mine = cpu_share(cpu_usage)
    others = max(other_shares, MIN_SHARE)
    total = concurrency + other_slots
    portion = total * mine / (mine + others)

    def burst_time(n: int) -> float:  # in task-times: mine at my share, the rest at the peers'
        return max(n / mine, (total - n) / others)

    low = math.floor(portion)
    held = low if burst_time(low) < burst_time(low + 1) else low + 1
    return max(1, min(concurrency, held))
