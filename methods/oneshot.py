"""One-Shot: Understanding and Simplifying One-Shot Architecture Search (Bender et al., ICML 2018).

The one-shot model runs every candidate op of every choice point and sums their outputs (a `WeightedChoice` over
the non-'none' candidates with weights 1; 'none' adds nothing). Training uses:

* scheduled path dropout: at training step t the rate r(t) = r_max * t / (T - 1) grows linearly from 0 to `r_max`
  over the T steps of the search, and each op path is zeroed independently with probability r(t)^(1/k), where k
  is the number of paths feeding the same sum, so the chance of losing all k is r(t) whatever k (the paper's
  rule). A dropped op is not run at all (no forward call, no gradient). When every path of a sum would be
  dropped, one of them, chosen uniformly, is kept, so no sum is ever empty. The sum ("dropout unit") is a cell
  node with `dropout_unit: node` (nb201 and darts_cell: all ops on all edges into the node, so whole edges can be
  switched off, as an architecture does) or a choice point with `dropout_unit: point` (an edge or layer);
  mbnet_chain has no multi-edge nodes, so both mean a layer there. No rescaling of the kept ops (weights stay 1).
* ghost batch normalization: the batch is split into chunks of `ghost_batch_size` (the paper: 128 of 1024) and the
  supernet runs once per chunk, so every BatchNorm normalises with that chunk's statistics; the logits are
  concatenated, the loss is the mean over the whole batch and one SGD step follows. Each ghost batch draws its
  own dropout mask (a path entry is one mask for the whole forward, so this is the finest granularity the
  supernet interface allows). With batches no larger than `ghost_batch_size` it is a single forward.
* L2 regularization only on the active part of the model: the shared SGD optimizer applies weight decay inside
  its step to parameters that received a gradient, and a dropped op's parameters receive none
  (`zero_grad(set_to_none=True)`), so dropped ops are neither decayed nor moved by momentum on that step.

Evaluation (ranking proxy): the one-shot accuracy of an arch is the one-shot model's accuracy with every op not in
the arch zeroed out, i.e. its single path (`arch_to_path`, 'none' edges contribute nothing), after BN
recalibration for that path, the spine's `supernet_accuracy`. Derive: random search, the best of
`budget.candidates` distinct uniformly sampled archs by one-shot accuracy.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from oneshot_bench.errors import ConfigError
from oneshot_bench.training import check_finite
from search_spaces.base import Arch, ChoicePoint, Path, PathEntry, WeightedChoice

from .base import register_method
from .supernet import SupernetMethod

NONE = "none"
_NODE_EDGE = re.compile(r"(?:(?P<cell>.+)\.)?(?P<to>\d+)<-(?P<src>\d+)")  # 'i<-j' (nb201), 'normal.i<-j' (darts)


def dropout_groups(points: Sequence[ChoicePoint], unit: str) -> list[list[int]]:
    """Choice points whose op paths feed the same sum. unit='point': one group per choice point; unit='node': the
    edges into one cell node (recognised by edge names 'i<-j' or '<cell>.i<-j'), other points alone."""
    if unit == "point":
        return [[p] for p in range(len(points))]
    if unit != "node":
        raise ConfigError(f"oneshot: dropout_unit must be 'node' or 'point', got {unit!r}.")
    groups: dict[Any, list[int]] = {}
    for p, cp in enumerate(points):
        m = _NODE_EDGE.fullmatch(cp.name)
        groups.setdefault((m.group("cell"), m.group("to")) if m else ("point", p), []).append(p)
    return list(groups.values())


@dataclass
class OneShotHparams:
    r_max: float = 0.2  # final path-dropout rate r; each path is dropped with probability r^(1/k) (paper's rule)
    dropout_unit: str = "node"  # node | point: the sum whose k paths share r^(1/k) and keep at least one path
    ghost_batch_size: int = 128  # BatchNorm statistics per chunk of this many examples (paper: 128 of 1024)


@register_method("oneshot")
class OneShot(SupernetMethod):
    Hparams = OneShotHparams

    def build(self) -> None:
        if not 0.0 <= self.hp.r_max < 1.0:
            raise ConfigError(f"oneshot: r_max must be in [0, 1), got {self.hp.r_max}.")
        if self.hp.ghost_batch_size < 1:
            raise ConfigError(f"oneshot: ghost_batch_size must be >= 1, got {self.hp.ghost_batch_size}.")
        super().build()
        points = self.supernet.choice_points
        self.groups = dropout_groups(points, self.hp.dropout_unit)
        self.ops = [[k for k, name in enumerate(cp.candidates) if name != NONE] for cp in points]
        self.none_index = [cp.candidates.index(NONE) if NONE in cp.candidates else None for cp in points]
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
        """Kept (non-'none') candidate indices per choice point under path dropout at `rate`."""
        kept: list[list[int]] = [[] for _ in self.ops]
        for group in self.groups:
            paths = [(p, k) for p in group for k in self.ops[p]]
            q = self.drop_probability(rate, len(paths))
            survivors = [pk for pk in paths if self.rng.random() >= q]
            if not survivors:  # never drop every path into a sum
                survivors = [self.rng.choice(paths)]
            for p, k in survivors:
                kept[p].append(k)
            for p in group:  # a point that cannot be empty (no 'none' candidate) keeps one of its ops
                if not kept[p] and self.none_index[p] is None:
                    kept[p].append(self.rng.choice(self.ops[p]))
        return kept

    def path_from_kept(self, kept: Sequence[Sequence[int]]) -> list[PathEntry]:
        """The one-shot path: the kept ops of each point summed with weight 1; 'none' where nothing is kept."""
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

    def oneshot_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One SGD step of the one-shot model with scheduled path dropout and ghost BatchNorm."""
        rate = self.dropout_rate(self.step)
        n_ghost = math.ceil(len(x) / self.hp.ghost_batch_size)
        kept = [self.sample_kept(rate) for _ in range(n_ghost)]
        self.kept_ops += sum(len(k) for ks in kept for k in ks)
        self.total_ops += n_ghost * sum(len(o) for o in self.ops)
        self.supernet.train()
        loss = F.cross_entropy(self.ghost_logits(x, [self.path_from_kept(k) for k in kept]), y)
        check_finite(loss, "oneshot supernet training")
        self.w_optimizer.zero_grad(set_to_none=True)  # dropped ops get no gradient, hence no weight decay
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), self.ctx.budget.grad_clip)
        self.w_optimizer.step()
        self.w_scheduler.step()
        self.step += 1
        return loss.item()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.kept_ops = self.total_ops = 0
        losses = [self.oneshot_step(x, y) for x, y in self.train_batches()]
        return {"train_loss": sum(losses) / len(losses), "lr": self.w_scheduler.get_last_lr()[0],
                "dropout_rate": self.dropout_rate(self.step - 1), "kept_op_fraction": self.kept_ops / self.total_ops}

    # ---- search -----------------------------------------------------------------------------------------------------
    def derive(self) -> Arch:
        n = self.ctx.budget.candidates
        candidates: list[Arch] = []
        for _ in range(100 * n):
            if len(candidates) >= n:
                break
            arch = self.ctx.space.sample(self.rng)
            if arch not in candidates:
                candidates.append(arch)
        self.derive_candidates = {a: self.supernet_accuracy(a)
                                  for a in tqdm(candidates, desc="oneshot random search", leave=False)}
        return max(candidates, key=self.derive_candidates.__getitem__)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = state["step"]
