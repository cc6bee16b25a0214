"""Anytime ranking curves (budget.ranking_every = K): the method scores the shared sample after every K search
epochs, so a record shows how its ranking quality grows with training (the GHN paper's anytime view) and where it
passes the free references.

Scoring part-way must not change the run: the method's whole state (weights, BatchNorm statistics, optimizers,
architecture parameters, its random generators) and torch's global random state are copied before and restored
after, so training continues bit-identically (tests/test_anytime.py checks every method) and `ranking_every` is
not part of the run's identity. Its time is the `anytime` phase: neither search cost nor the final ranking's
evaluation cost. A point is skipped when it would take the run's anytime scoring past `budget.anytime_share` (10%)
of its training time so far, so a slow scorer gets fewer, more widely spaced points, never a slower search.
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
from .ranking import ranking_metrics
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
        self.skipped = 0
        self.arch_seconds = 0.0  # seconds to score one arch, as last measured (0: not yet measured)

    def due(self, epoch: int) -> bool:
        """After epoch `epoch` (0-based); the last epoch's ranking is the run's own evaluation."""
        done = epoch + 1
        return self.every > 0 and self.method.trains and done % self.every == 0 and done < self.epochs

    def allowance(self) -> float:
        """Seconds of anytime scoring the run may still spend now: `share` of the training so far, less what
        earlier points took (so the share holds at every epoch, and points spread over the run)."""
        return (self.share * self.meter.seconds.get("supernet_train", 0.0)
                - self.meter.seconds.get("anytime", 0.0))

    def after_epoch(self, epoch: int) -> None:
        if not self.due(epoch):
            return
        allowed = self.allowance()
        if self.arch_seconds * self.sample_size > allowed:  # what scoring one arch took so far predicts this point
            self.skip(epoch)
            return
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
            metrics = ranking_metrics(scores, truth, resamples=self.resamples, seed=self.seed)
        point = AnytimePoint(epoch=epoch + 1, train_seconds=self.meter.seconds.get("supernet_train", 0.0),
                             n=len(sample),
                             kendall_tau=metrics["kendall_tau"], kendall_tau_ci_low=metrics["kendall_tau_ci_low"],
                             kendall_tau_ci_high=metrics["kendall_tau_ci_high"])
        self.points.append(asdict(point))
        log.info("anytime ranking after epoch %d: Kendall tau %.3f", epoch + 1, metrics["kendall_tau"])

    def skip(self, epoch: int) -> None:
        self.skipped += 1
        if self.skipped == 1:
            log.info("anytime ranking after epoch %d skipped: scoring the sample would take %s's anytime scoring "
                     "past %g%% of its training time (budget.anytime_share)", epoch + 1, self.method.name,
                     100 * self.share)
