"""SPOS: Single Path One-Shot NAS with uniform sampling (Guo et al., ECCV 2020).

Supernet training samples one path uniformly per step; ranking uses supernet accuracy (BN as below);
the final search is an evolutionary algorithm under an optional params/FLOPs constraint (mutation and crossover,
topped up with uniformly sampled archs when they fall short, as the official `search.py` does).

As in the official supernet (megvii-model/SinglePathOneShot), the BNs of the candidate ops have no scale or shift
(`bn_affine: false`); a subnet still copies exactly into an affine standalone net (scale 1, shift 0).

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): the paper recalculates the statistics of all BNs on
a random training subset (20,000 ImageNet images) before each architecture is evaluated (its "Evolutionary Architecture
Search" subsection); the official `get_cand_err` (src/Search/tester.py) resets every BN's running mean and variance and
runs 200 training batches of 128 in train mode (momentum 0.1) before evaluating in eval mode. Here the mode applies to
the ranking of the shared sample and the evolutionary search (`ranked`); default: the space's
(`SearchSpace.scoring_bn_mode`: batch_stats_choice on the NAS-Bench-201 space, chosen across seeds in issue 28;
recalibrate_all elsewhere), `scoring.bn_mode=recalibrate_all` gives the paper's recipe.

Departures from the official code: the search space is the harness' (any space with a supernet), not the
ShuffleNetV2 choice blocks, so the stem and head BNs follow the space (affine); the FLOPs/params constraint is
counted at the budget's final network; evolution's sizes come from the budget (the paper: population 50, 20
generations, top 10, at `budget=paper`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from oneshot_bench.config import BudgetConfig
from oneshot_bench.errors import ConfigError
from oneshot_bench.training import EpochMeans
from search_spaces.base import Arch

from .base import register_method
from .constraints import ResourceConstraint
from .evolution import evolutionary_search
from .supernet import SupernetMethod


@dataclass
class SPOSHparams:
    topk: int = 10  # parents kept per generation (the paper: 10 of 50)
    mutation_prob: float = 0.1  # per-decision resampling probability (the paper: 0.1)
    max_params: Optional[float] = None  # constraint on the final network's parameter count
    max_flops: Optional[float] = None  # constraint on its FLOPs (multiply-add = 2), at the budget's resolution
    bn_affine: bool = False  # scale/shift in the candidate ops' BNs (official supernet: no)

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise ConfigError(f"method.params.topk must be >= 1, got {self.topk}.")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise ConfigError(f"method.params.mutation_prob must be in [0, 1], got {self.mutation_prob}.")
        for key in ("max_params", "max_flops"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"method.params.{key} must be > 0 or null (no constraint), got "
                                  f"{getattr(self, key)}.")


@register_method("spos")
class SPOS(SupernetMethod):
    Hparams = SPOSHparams

    def build(self) -> None:
        super().build()
        ctx = self.ctx
        self.constraint = ResourceConstraint(ctx.space, ctx.final_net, ctx.final_resolution,
                                             max_params=self.hp.max_params, max_flops=self.hp.max_flops)

    def sample_arch(self):
        """Uniform path sampling; under a constraint the paper samples uniformly among archs that satisfy it."""
        for _ in range(1000):
            arch = self.ctx.space.sample(self.rng)
            if self.constraint(arch):
                return arch
        raise ValueError("no sampled architecture satisfies max_params/max_flops; relax the constraint")

    def train_epoch(self, epoch: int) -> dict[str, float]:
        steps = EpochMeans()
        for x, y in self.train_batches():
            steps.add("train_loss", self.weight_step(self.path_of(self.sample_arch()), x, y), self.training_where)
        return {**steps.means(), "lr": self.w_scheduler.get_last_lr()[0]}

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """The evolutionary search (budget.evolution_population x (generations + 1) evaluations; `n` does not
        change it): every arch it evaluated, by supernet accuracy."""
        self.evolution = evolutionary_search(
            self.ctx.space, self.cached("derive", self.supernet_accuracy), self.rng, **self.evolution_settings(),
            pool=self.ctx.arch_pool)
        return sorted(self.evolution.evaluated.items(), key=lambda item: -item[1])

    ranking_size_source = "budget.evolution_population x (budget.evolution_generations + 1)"

    def ranking_size(self, n: int, budget: BudgetConfig) -> int:
        """Every arch the evolution evaluates: its population, once per generation and once before them."""
        return budget.evolution_population * (budget.evolution_generations + 1)

    def evolution_settings(self) -> dict[str, Any]:
        b = self.ctx.budget
        return dict(population=b.evolution_population, generations=b.evolution_generations,
                    topk=min(self.hp.topk, b.evolution_population), mutation_prob=self.hp.mutation_prob,
                    constraint=self.constraint if self.constraint.active else None)
