"""One-Shot: Understanding and Simplifying One-Shot Architecture Search (Bender et al., ICML 2018).

The one-shot model runs every candidate op of every choice point and sums their outputs (a `WeightedChoice` over
the non-'none' candidates with weights 1; 'none' adds nothing). Training uses:

* scheduled path dropout: at training step t the rate r(t) = r_max * t / (T - 1) grows linearly from 0 to `r_max`
  over the T steps of the search, and each op path is zeroed independently with probability r(t)^(1/k), where k
  is the number of paths feeding the same sum, so the chance of losing all k is r(t) whatever k (the paper's
  rule). A dropped op is not run at all (no forward call, no gradient). When every path of a sum would be
  dropped, one of them, chosen uniformly, is kept, so no sum is ever empty. The sum ("dropout unit") is a cell
  node with `dropout_unit: node` (the choice points that declare the same `node`: all ops on all edges into it,
  so whole edges can be switched off, as an architecture does) or a choice point with `dropout_unit: point` (an
  edge or layer); a point that declares no node (a layer of a chain) is its own unit either way. The zero op (the
  candidate whose trait says so) is never a path. No rescaling of the kept ops (weights stay 1).
* ghost batch normalization: the batch is split into chunks of `ghost_batch_size` (the paper: 128 of 1024) and the
  supernet runs once per chunk, so every BatchNorm normalises with that chunk's statistics; the logits are
  concatenated, the loss is the mean over the whole batch and one SGD step follows. Each ghost batch draws its
  own dropout mask (a path entry is one mask for the whole forward, so this is the finest granularity the
  supernet interface allows). With batches no larger than `ghost_batch_size` it is a single forward.
* L2 regularization only on the active part of the model: the shared SGD optimizer applies weight decay inside
  its step to parameters that received a gradient, and a dropped op's parameters receive none
  (`zero_grad(set_to_none=True)`), so dropped ops are neither decayed nor moved by momentum on that step.

Evaluation (ranking proxy): the one-shot accuracy of an arch is the one-shot model's accuracy with every op not in
the arch zeroed out, i.e. its single path (`arch_to_path`, 'none' edges contribute nothing), with BN as
below, the spine's `supernet_accuracy`. Derive: random search, the best of
`budget.candidates` distinct uniformly sampled archs by one-shot accuracy.

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): unconfirmed. The paper evaluates a candidate with
the one-shot model's weights and the ops outside it zeroed; it has no official code, and we could not check its text for
how the BNs were set then (a recollection that they normalised with the evaluation batch's own statistics is
unverified). Here the mode applies to the ranking of the shared sample and the random search (`ranked`); default: the
space's (`SearchSpace.scoring_bn_mode`: batch_stats_choice on the NAS-Bench-201 space, chosen across seeds in issue 28;
recalibrate_all elsewhere); recalibrate_all, this harness' earlier protocol, is SPOS' recipe, not known to be this
paper's.

Departures from the paper: the schedule, the ghost batches and the one-shot accuracy follow it; the supernet is
the harness' shared one (BatchNorm affine and tracking running statistics everywhere, so a path's weights copy
exactly into a standalone net), and the paper's own search space and its F=32/64 filter settings are not built.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from oneshot_bench.config import Choice
from oneshot_bench.errors import ConfigError
from oneshot_bench.training import EpochMeans, optimizer_step
from search_spaces.base import Arch, ChoicePoint, Path, PathEntry, WeightedChoice

from .base import rank, register_method
from .supernet import SupernetMethod


class DropoutUnit(Choice):
    node = "node"  # the choice points that declare the same node (the edges into one cell node) share a sum
    point = "point"  # every choice point alone


def dropout_groups(points: Sequence[ChoicePoint], unit: DropoutUnit) -> list[list[int]]:
    """Choice points whose op paths feed the same sum, from the points' declared `node`: unit='point': one group
    per choice point; unit='node': the points sharing a node, and each point without a node alone."""
    groups: dict[Any, list[int]] = {}
    for p, cp in enumerate(points):
        shared = unit == DropoutUnit.node and cp.node is not None
        groups.setdefault(("node", cp.node) if shared else ("point", p), []).append(p)
    return list(groups.values())


@dataclass
class OneShotHparams:
    r_max: float = 0.2  # final path-dropout rate r; each path is dropped with probability r^(1/k) (paper's rule)
    dropout_unit: DropoutUnit = DropoutUnit.node  # the sum whose k paths share r^(1/k) and keep at least one path
    ghost_batch_size: int = 128  # BatchNorm statistics per chunk of this many examples (paper: 128 of 1024)

    def __post_init__(self) -> None:
        if not 0.0 <= self.r_max < 1.0:
            raise ConfigError(f"method.params.r_max must be in [0, 1), got {self.r_max}.")
        if self.ghost_batch_size < 1:
            raise ConfigError(f"method.params.ghost_batch_size must be >= 1, got {self.ghost_batch_size}.")


@register_method("oneshot")
class OneShot(SupernetMethod):
    Hparams = OneShotHparams

    def build(self) -> None:
        super().build()
        points = self.supernet.choice_points
        self.groups = dropout_groups(points, self.hp.dropout_unit)
        self.ops = [list(cp.nonzero_indices) for cp in points]
        self.none_index = [cp.zero_index for cp in points]
        self.total_steps = self.ctx.budget.search_epochs * self.steps_per_epoch
        self.step = 0  # training steps taken (drives the dropout schedule)
        self.kept_ops = self.total_ops = 0  # kept / all op paths over the epoch's ghost batches
        self._ones: dict[int, torch.Tensor] = {}

    # ---- path dropout ---------------------------------------------------------------------------------------------
    def dropout_rate(self, step: int) -> float:
        """r(t): 0 at the first step, r_max at the last, linear in between."""
        return self.hp.r_max * min(1.0, max(0.0, step / max(1, self.total_steps - 1)))

    @staticmethod
    def drop_probability(rate: float, k: int) -> float:
        """Per-path drop probability r^(1/k): all k paths of a sum are dropped with probability r."""
        return rate ** (1.0 / k) if rate > 0 else 0.0

    def sample_kept(self, rate: float) -> list[list[int]]:
        """Kept (non-zero) candidate indices per choice point under path dropout at `rate`."""
        kept: list[list[int]] = [[] for _ in self.ops]
        for group in self.groups:
            paths = [(p, k) for p in group for k in self.ops[p]]
            q = self.drop_probability(rate, len(paths))
            survivors = [pk for pk in paths if self.rng.random() >= q]
            if not survivors:  # never drop every path into a sum
                survivors = [self.rng.choice(paths)]
            for p, k in survivors:
                kept[p].append(k)
            for p in group:  # a point that cannot be empty (no zero op) keeps one of its ops
                if not kept[p] and self.none_index[p] is None:
                    kept[p].append(self.rng.choice(self.ops[p]))
        return kept

    def path_from_kept(self, kept: Sequence[Sequence[int]]) -> list[PathEntry]:
        """The one-shot path: the kept ops of each point summed with weight 1; the zero op where nothing is kept."""
        return [WeightedChoice(tuple(k), self._weights(len(k))) if k else self.none_index[p]
                for p, k in enumerate(kept)]

    def _weights(self, n: int) -> torch.Tensor:
        if n not in self._ones:
            self._ones[n] = torch.ones(n, device=self.ctx.device)
        return self._ones[n]

    def full_path(self) -> list[PathEntry]:
        """The whole one-shot model (no dropout)."""
        return self.path_from_kept(self.ops)

    # ---- training ------------------------------------------------------------------------------------------------
    def ghost_logits(self, x: torch.Tensor, paths: Sequence[Path]) -> torch.Tensor:
        """Logits of x with BatchNorm statistics per ghost batch: chunk i runs path paths[i]."""
        chunks = x.split(self.hp.ghost_batch_size)
        if len(paths) != len(chunks):
            raise ValueError(f"{len(chunks)} ghost batches but {len(paths)} paths")
        return torch.cat([self.supernet(c, p) for c, p in zip(chunks, paths, strict=True)])

    def oneshot_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step of the one-shot model with scheduled path dropout and ghost BatchNorm."""
        rate = self.dropout_rate(self.step)
        n_ghost = math.ceil(len(x) / self.hp.ghost_batch_size)
        kept = [self.sample_kept(rate) for _ in range(n_ghost)]
        self.kept_ops += sum(len(k) for ks in kept for k in ks)
        self.total_ops += n_ghost * sum(len(o) for o in self.ops)
        self.supernet.train()
        loss = F.cross_entropy(self.ghost_logits(x, [self.path_from_kept(k) for k in kept]), y)
        # dropped ops get no gradient (grad None), hence no weight decay or momentum step
        value = optimizer_step(loss, self.w_optimizer, self.supernet, self.ctx.budget.grad_clip, self.w_scheduler)
        self.step += 1
        return value

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.kept_ops = self.total_ops = 0
        steps = EpochMeans()
        for x, y in self.train_batches():
            steps.add("train_loss", self.oneshot_step(x, y), self.training_where)
        return {**steps.means(), "lr": self.w_scheduler.get_last_lr()[0],
                "dropout_rate": self.dropout_rate(self.step - 1), "kept_op_fraction": self.kept_ops / self.total_ops}

    # ---- search -----------------------------------------------------------------------------------------------------
    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """Random search: n distinct uniform archs ranked by one-shot accuracy."""
        ranking = rank(self.candidate_archs(n), self.cached("derive", self.supernet_accuracy), "oneshot random search")
        self.derive_candidates = dict(ranking)
        return ranking

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = state["step"]
