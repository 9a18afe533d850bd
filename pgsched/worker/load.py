"""Load sampling for heartbeats: host CPU and memory, in percent (psutil)."""

from __future__ import annotations

import psutil


class LoadSampler:
    """CPU is averaged over the time since the previous sample (one heartbeat interval), so a
    momentary spike does not stop a worker from claiming."""

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # prime: the first call has no interval to measure

    def sample(self) -> tuple[float, float]:
        return float(psutil.cpu_percent(None)), float(psutil.virtual_memory().percent)
