"""BatchNorm state while a supernet scores one subnet by its accuracy: the named modes of
`oneshot_bench.config.BnMode`, applied to the BNs the space declares.

A "choice BN" is a BatchNorm inside a `ChoiceOp` (the module that runs a declared choice point's candidates); every
other BN (stem, cell preprocessing, reduction blocks, the head) is "fixed". The split comes from that declaration,
never from module names, so a space that builds its supernet from `ChoiceOp`s gets every mode.

    recalibrate_all      reset every BN, re-estimate all of them on the calibration batches with the rest of the net
                         in training mode (SPOS, Guo et al. 2020: the statistics of all BNs are recalculated on
                         training data before an arch is evaluated; this harness' only protocol before issue 28, and
                         what records without a mode used)
    recalibrate_choice   re-estimate the choice BNs only; the fixed BNs stay in eval mode on their trained statistics
    batch_stats_choice   the choice BNs normalise with each scoring batch's own statistics; the fixed BNs use their
                         trained statistics (NAS-Bench-201's `track_running_stats=False` supernets)
    running              eval mode throughout: every BN uses the statistics tracked during training

Every mode restores every BN buffer, momentum and train/eval flag on exit, so scoring has no side effect: the next
score, the next training step and the checkpoint are what they would have been without it (before issue 28 a
recalibration left the last scored subnet's statistics in the supernet, and they leaked into the checkpoint and
into anything that read running statistics afterwards).

Why recalibrating the fixed BNs loses the signal (issue 28). It is not a defect of the recalibration: it is what
recalibrating a fixed BN downstream of a choice point measures. Measured on the NAS-Bench-201 space at
budget=compare, SPOS, seed 0, one trained supernet, the 200-arch sample, recalibrating one group of BNs at a time
(`benchmarks/bn_mode_diagnosis.py`; Kendall tau against NB201 truth, and in brackets against each cell's number of
skip connections):

    running statistics everywhere                       0.175 (skip 0.087)
    re-estimate the choice BNs only (recalibrate_choice) 0.381 (0.010)
      ... and the stem BN (upstream of every choice)    0.381 (0.004)   the stem is harmless
      ... and the head BN (after the last cell)         0.149 (0.259)
      ... and the 4 reduction-block BNs (between cells) 0.067 (0.323)
    every BN (recalibrate_all)                          0.030 (0.314)
      ... calibration batches without augmentation      0.043 (0.346)   augmentation does not matter
      ... on 20 batches instead of 4                    0.059 (0.331)   more batches do not help
    choice BNs on batch statistics (batch_stats_choice) 0.354 (0.031)

The cumulative average (momentum None) over the calibration batches is exact, and the loss comes from the fixed BNs
that sit after a choice point. Such a BN (a reduction block's, the head's) was trained on the mixture of
every path's features, and the shared layers after it learned to read features normalised with those mixture
statistics. Re-estimating it for one subnet re-normalises that subnet's features to zero mean and unit variance,
which erases what separates a weak subnet from a strong one in a shared-weight net: how far its features sit from
what the shared layers after it were trained on. A cell made mostly of skip connections (a shallow net of the
always-trained fixed layers) then scores like a deep one once its activations are rescaled, and the ranking drifts
toward skip count. `tests/test_bn_scoring.py` pins the mechanism on a supernet small enough to reason about: a
recalibrated fixed BN ties a subnet whose features are off the trained scale with one that fits it; every mode that
keeps the fixed BNs' trained statistics tells them apart. SPOS's recipe was made for a ShuffleNet supernet whose only
fixed BN after its choice blocks is the last convolution's; NB201's macro skeleton has fixed BNs after every cell.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from oneshot_bench.config import BnMode
from oneshot_bench.training import batchnorms, recalibrate_bn
from search_spaces.base import ChoiceOp

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def choice_batchnorms(supernet: nn.Module) -> list[_BatchNorm]:
    """The BNs inside the supernet's `ChoiceOp`s (its declared choice points), in module order."""
    choices = [m for m in supernet.modules() if isinstance(m, ChoiceOp)]
    if not choices:
        raise ValueError(f"{type(supernet).__name__} declares no choice points (no ChoiceOp module), so its choice "
                         f"BNs are unknown; build its candidate ops inside ChoiceOp")
    seen: dict[int, _BatchNorm] = {}
    for choice in choices:
        for bn in batchnorms(choice):
            seen.setdefault(id(bn), bn)
    return list(seen.values())


def _snapshot(bns: list[_BatchNorm]) -> list[tuple]:
    return [(bn, {k: v.clone() for k, v in bn.named_buffers(recurse=False) if v is not None}, bn.momentum)
            for bn in bns]


def _restore(saved: list[tuple]) -> None:
    for bn, buffers, momentum in saved:
        for name, value in buffers.items():
            getattr(bn, name).copy_(value)
        bn.momentum = momentum


@contextmanager
@torch.no_grad()
def bn_scoring(supernet: nn.Module, mode: BnMode, forward: Callable[[torch.Tensor], torch.Tensor],
               calibration: Batches) -> Iterator[None]:
    """Inside the block, `supernet` is in eval mode with its BNs as `mode` says for the subnet `forward` runs;
    `calibration()` gives the batches a recalibrating mode re-estimates on (the same fixed batches for every subnet).
    On exit, every BN buffer, momentum and train/eval flag, and the supernet's own mode, are as they were."""
    bns = batchnorms(supernet)
    saved = _snapshot(bns)
    flags = [(m, m.training) for m in supernet.modules()]  # every module's own train/eval flag, BN or not
    try:
        if mode in (BnMode.recalibrate_all, BnMode.recalibrate_choice):
            # recalibrate_all: every module in training mode, the legacy protocol bit for bit
            recalibrate_bn(supernet, forward, calibration(),
                           only=None if mode == BnMode.recalibrate_all else choice_batchnorms(supernet))
            supernet.eval()
        elif mode == BnMode.batch_stats_choice:
            supernet.eval()
            for bn in choice_batchnorms(supernet):
                bn.train()
                bn.momentum = 0.0  # normalise with the batch's statistics, leave the running ones untouched
        elif mode == BnMode.running:
            supernet.eval()
        else:
            raise ValueError(f"unknown BN scoring mode {mode!r}; choose one of {[str(m) for m in BnMode]}")
        yield
    finally:
        _restore(saved)
        for module, training in flags:
            module.training = training
