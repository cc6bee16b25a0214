"""Search cost per phase in device-seconds and GPU-days (network size is measured by oneshot_bench.measure)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from oneshot_bench.device import device_name, synchronize

from .record import SEARCH_PHASES, Cost, PhaseCost

SECONDS_PER_DAY = 86400.0


@dataclass
class CostMeter:
    """Wall-clock seconds per phase on one device (device-seconds); GPU-days = device-seconds / 86400.

    On CPU the same number is reported with the device name, so a "GPU-day" measured on a CPU is never mistaken
    for one measured on a GPU. Search cost counts the method's own work only (record.SEARCH_PHASES); scoring the
    shared benchmark sample is evaluation, reported on its own.
    """

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def summary(self) -> Cost:
        search = sum(v for k, v in self.seconds.items() if k in SEARCH_PHASES)
        return Cost(device=device_name(self.device), device_type=self.device.type,
                    phases={k: PhaseCost(v, v / SECONDS_PER_DAY) for k, v in self.seconds.items()},
                    search_device_seconds=search, search_gpu_days=search / SECONDS_PER_DAY,
                    evaluation_device_seconds=self.seconds.get("ranking", 0.0))
