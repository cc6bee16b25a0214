"""Search cost per phase in device-seconds and GPU-days, plus parameter count and FLOPs of a network."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from oneshot_bench.device import device_name, synchronize

SECONDS_PER_DAY = 86400.0


@dataclass
class CostMeter:
    """Wall-clock seconds per phase on one device (device-seconds); GPU-days = device-seconds / 86400.

    On CPU the same number is reported with the device name, so a "GPU-day" measured on a CPU is never mistaken
    for one measured on a GPU.
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

    def summary(self) -> dict:
        search = sum(v for k, v in self.seconds.items() if k != "final")
        return {
            "device": device_name(self.device),
            "device_type": self.device.type,
            "phases": {k: {"device_seconds": v, "gpu_days": v / SECONDS_PER_DAY} for k, v in self.seconds.items()},
            "search_device_seconds": search,
            "search_gpu_days": search / SECONDS_PER_DAY,
        }


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def count_flops(net: nn.Module, in_channels: int, resolution: int) -> int:
    """FLOPs of one forward pass on one image, counted by torch's FlopCounterMode (a multiply-add = 2 FLOPs)."""
    net = net.eval()
    x = torch.zeros(1, in_channels, resolution, resolution, device=next(net.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return int(counter.get_total_flops())
