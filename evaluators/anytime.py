"""Anytime ranking curves (budget.ranking_every = K): the method scores the shared sample after every K search
epochs, so a record shows how its ranking quality grows with training (the GHN paper's anytime view) and where it
passes the free references.

Scoring part-way must not change the run: the method's whole state (weights, BatchNorm statistics, optimizers,
architecture parameters, its random generators) and torch's global random state are copied before and restored
after, so training continues bit-identically (tests/test_anytime.py checks every method) and `ranking_every` is
not part of the run's identity. Its time is the `anytime` phase: neither search cost nor the final ranking's
evaluation cost.

The cap holds over the whole run: anytime scoring may take `budget.anytime_share` of the run's training time,
projected at each due epoch as the mean epoch time so far x `search_epochs`. (A cap on the training so far starved
cheap methods: their early points never fitted, and SPOS runs ended with no curve at all.) At a due epoch (every K
epochs, the final one excluded: the final ranking is the run's own) the scorer knows
  A = anytime_share x projected training time - anytime seconds spent  (the allowance left),
  P = A // cost of one point  (points still affordable; the cost as last measured, scoring and tau together),
  D = due epochs left, this one included,
  g = due epochs since the last point (or since the run's start), this one included,
and takes this epoch's point when P x g >= g + D - 1: the P affordable points, spaced evenly over the g + D - 1
due epochs after the last point, would put one here (a Bresenham step, rounded so the last one lands on the last
due epoch). So points spread over the run rather than spending the allowance on its first due epochs, every due
epoch gets one when P >= D, and none is taken once P = 0. The first point, whose cost is not yet known, is taken
when due; scoring any point stops as soon as one arch's time says the point would pass A (the point is then
dropped, its time still counted). With epochs of constant time the projection is exact, so a run's anytime
seconds end at most one point's cost above anytime_share x its training time, and less than one point's cost
below it unless every due epoch got a point (tests/test_anytime.py drives this with a fake clock).
"""
from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from methods.base import Method

from .cost import CostMeter
from .ranking import kendall_metrics
from .record import AnytimePoint

log = logging.getLogger("oneshot_bench")


class AnytimeScorer:
    def __init__(self, method: Method, meter: CostMeter, every: int, epochs: int,
                 sample_and_truth: Callable[[], tuple[list, list[float]]], sample_size: int, resamples: int,
                 seed: int, points: list[dict[str, Any]], share: float = 0.1):
        self.method, self.meter, self.every, self.epochs, self.share = method, meter, every, epochs, share
        self.sample_and_truth, self.sample_size = sample_and_truth, sample_size
        self.resamples, self.seed = resamples, seed
        self.points = points  # kept by the runner (checkpointed with the method)
        self.capped = False  # a due point found unaffordable (logged once)
        self.arch_seconds = 0.0  # seconds to score one arch, as last measured (0: not yet measured)
        # seconds one whole point took (scoring and its tau), as last measured; a resumed run starts from the mean
        # of its earlier points (an upper bound where one was dropped part-way)
        self.point_seconds = meter.seconds.get("anytime", 0.0) / len(points) if points else 0.0

    def due(self, epoch: int) -> bool:
        """After epoch `epoch` (0-based); the last epoch's ranking is the run's own evaluation."""
        done = epoch + 1
        return self.every > 0 and self.method.trains and done % self.every == 0 and done < self.epochs

    def allowance(self, epoch: int) -> float:
        """Seconds of anytime scoring the run may still spend after epoch `epoch`: `share` of its projected
        training time (mean epoch time so far x epochs), less what earlier points took."""
        projected = self.meter.seconds.get("supernet_train", 0.0) / (epoch + 1) * self.epochs
        return self.share * projected - self.meter.seconds.get("anytime", 0.0)

    def point_cost(self) -> float:
        """Seconds one point is expected to take (0: not yet measured): the last whole point, or one arch's time
        x the sample where that says more (a point dropped part-way measured only its archs)."""
        return max(self.point_seconds, self.arch_seconds * self.sample_size)

    def takes(self, epoch: int) -> bool:
        """Whether the due epoch `epoch` gets its point (the module docstring's rule)."""
        cost = self.point_cost()
        if cost <= 0:
            return True  # the first point: its own scoring stops it if one arch says it would not fit
        affordable = int(self.allowance(epoch) // cost)
        left = (self.epochs - 1) // self.every - (epoch + 1) // self.every + 1
        last = self.points[-1]["epoch"] if self.points else 0
        since = max((epoch + 1 - last) // self.every, 1)
        return affordable >= 1 and affordable * since >= since + left - 1

    def after_epoch(self, epoch: int) -> None:
        if not self.due(epoch):
            return
        if not self.takes(epoch):
            self.skip(epoch)
            return
        allowed, spent = self.allowance(epoch), self.meter.seconds.get("anytime", 0.0)
        method = self.method
        state = copy.deepcopy(method.state_dict())
        rng_states = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
                      torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        scores: list[float] = []
        try:
            # inside the snapshot (a training truth's first call trains reference networks), outside the phase
            sample, truth = (part[:self.sample_size] for part in self.sample_and_truth())
            with self.meter.phase("anytime"):
                start = time.perf_counter()
                for arch in sample:
                    scores.append(float(method.score([arch])[0]))
                    self.arch_seconds = max(self.arch_seconds, (time.perf_counter() - start) / len(scores))
                    if self.arch_seconds * len(sample) > allowed:
                        break  # one arch's time says this point would exceed the allowance: stop now
                self.arch_seconds = (time.perf_counter() - start) / max(len(scores), 1)
        finally:
            method.load_state_dict(state)
            torch.set_rng_state(rng_states[0])
            random.setstate(rng_states[1])
            np.random.set_state(rng_states[2])
            if rng_states[3] is not None:
                torch.cuda.set_rng_state_all(rng_states[3])
            method.extra_scores = {}
        if len(scores) < len(sample):
            self.skip(epoch)
            return
        with self.meter.phase("anytime"):
            metrics = kendall_metrics(scores, truth, resamples=self.resamples, seed=self.seed)
        self.point_seconds = self.meter.seconds["anytime"] - spent
        point = AnytimePoint(epoch=epoch + 1, train_seconds=self.meter.seconds.get("supernet_train", 0.0),
                             n=len(sample),
                             kendall_tau=metrics["kendall_tau"], kendall_tau_ci_low=metrics["kendall_tau_ci_low"],
                             kendall_tau_ci_high=metrics["kendall_tau_ci_high"])
        self.points.append(asdict(point))
        log.info("anytime ranking after epoch %d: Kendall tau %.3f", epoch + 1, metrics["kendall_tau"])

    def skip(self, epoch: int) -> None:
        """A due epoch without a point: spaced out by the rule (quietly), or unaffordable (said once: the curve
        ends short of its due epochs)."""
        if self.point_cost() <= self.allowance(epoch):
            log.debug("anytime ranking after epoch %d left out: points are spread over the run", epoch + 1)
        elif not self.capped:
            self.capped = True
            log.info("anytime ranking after epoch %d skipped: a point would take %s's anytime scoring past %g%% of "
                     "its projected training time (budget.anytime_share)", epoch + 1, self.method.name,
                     100 * self.share)
