"""Measuring networks: parameter count, FLOPs and latency. Below both the methods (resource constraints,
ProxylessNAS' cost tables) and the evaluator (the found arch's size), so neither imports the other for it."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .device import synchronize


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


@torch.no_grad()
def flops_of_calls(calls: Sequence[Callable[[], Any]]) -> list[float]:
    """FLOPs of each call (FlopCounterMode)."""
    out = []
    for call in calls:
        with FlopCounterMode(display=False) as counter:
            call()
        out.append(float(counter.get_total_flops()))
    return out


@torch.no_grad()
def latency_timings_ms(calls: Sequence[Callable[[], Any]], device: torch.device, repeats: int,
                       warmup: int = 3) -> list[list[float]]:
    """`repeats` timed runs of each call, in milliseconds, after `warmup` untimed rounds (warmed up: caches,
    allocator, cuDNN autotuning). Runs go round-robin over the calls, so that a burst of interference from other
    processes slows one run of many calls rather than every run of one call."""
    for _ in range(warmup):
        for call in calls:
            call()
    timings: list[list[float]] = [[] for _ in calls]
    for _ in range(max(1, repeats)):
        for n, call in enumerate(calls):
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            timings[n].append(1000.0 * (time.perf_counter() - start))
    return timings


def median_latency_ms(calls: Sequence[Callable[[], Any]], device: torch.device, repeats: int,
                      warmup: int = 3) -> list[float]:
    """Median of `repeats` warmed-up timed runs of each call (robust to bursts both ways)."""
    return [statistics.median(t) for t in latency_timings_ms(calls, device, repeats, warmup)]
