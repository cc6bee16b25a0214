"""GreedyNAS: Towards Fast One-Shot NAS with Greedy Supernet (You et al., CVPR 2020).

SPOS with a greedy supernet. The first `warmup_iters` weight steps train uniformly sampled single paths, as SPOS
does (the paper warms the supernet up before filtering; mmrazor's config: 10,000 of 150,000 iterations, so the
default is 1/15 of the search's weight steps). After that, rather than training every uniformly sampled path, each
iteration

1. samples m = `num_paths` paths, each taken from the candidate pool with probability epsilon(t) (exploitation,
   uniformly among the pool's paths) and uniformly from the space otherwise (exploration; under a params/FLOPs
   constraint, uniformly among the archs that satisfy it, as SPOS);
2. evaluates each by its cross-entropy loss on ONE fixed search-val subset (`val_batch_size` examples drawn once
   per run from the search-val split, no augmentation, BatchNorm on batch statistics, no gradient), so the losses
   that enter the pool are comparable with one another (the paper scores paths on a fixed small val subset);
3. keeps the k = `num_kept` paths of lowest loss (multi-path sampling with rejection) and pushes them, with their
   losses, into the candidate pool: a fixed-size pool (`pool_size`, paper 1000) holding the paths of lowest
   loss (a path already in the pool gets its newest loss; a full pool replaces its worst path by a better one);
4. trains the supernet on the k kept paths, one SGD step (the spine's `weight_step`) each on its own training
   batch.

Every `rescore_every` epochs the pool's paths are scored again on the fixed subset with the current weights, so
that a loss measured on early weights does not keep a path in the pool: new paths then compete against current
losses.

epsilon(t) grows linearly from 0 at the first greedy iteration to `epsilon_max` (paper 0.8) at the last. To spend
the same weight-training budget as SPOS, an epoch takes exactly as many weight steps as SPOS (one per training
batch, the last iteration of an epoch trains only the kept paths that still have a batch): the same number of
trained paths, plus m forward passes on the val subset per k of them (`self.stats`: paths_evaluated, paths_trained,
pool_size, paths_rescored, returned by `train_epoch` into the run history). The paper's ~60% of SPOS's supernet cost
comes from needing fewer epochs for the same accuracy; this implementation does not shorten the budget (nor use the
paper's pool-based stopping rule), so that all methods of a comparison get the same search epochs.

Ranking proxy: supernet accuracy (the spine's, BN as below). Derive: SPOS' evolutionary search, its
initial population taken from the candidate pool (best paths first).

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): what the paper did with BN we could not confirm;
its search is SPOS' evolution, which mmrazor's GreedyNAS port (PR #124, unmerged as far as we checked) runs with
`bn_training_mode=True` (`greedynas_evolution_search_mobilenet_8xb256_in1k.py`): every BN on the batch's statistics.
Here the mode applies to the ranking of the shared sample and the evolutionary search (`ranked`), not to the pool's path
losses (every BN on batch statistics, step 2); default: the space's (`SearchSpace.scoring_bn_mode`: batch_stats_choice
on the NAS-Bench-201 space, chosen across seeds in issue 28; recalibrate_all elsewhere), the nearest mode to mmrazor's
(none puts the fixed BNs on batch statistics too).

Departures (GreedyNAS has no official code; mmrazor's implementation stands in): paths are scored by loss, not
mmrazor's top-1 accuracy; the pool's re-scoring cadence (`rescore_every`) is ours; the supernet is the harness'
space (affine BNs, as mmrazor's), not the paper's MobileNet space.

Host reads per step (`host_reads_per_step`, enforced by tests/test_host_syncs.py): `path_losses` reads the m paths'
losses from the device in one sync per greedy iteration, because the k-of-m filter orders them. Training losses stay
on the device until the epoch ends.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from oneshot_bench.errors import ConfigError
from oneshot_bench.training import EpochMeans, batch_stat_bn
from search_spaces.base import Arch

from .base import register_method
from .evolution import evolutionary_search
from .spos import SPOS, SPOSHparams


class CandidatePool:
    """The `size` paths of lowest validation loss seen so far (GreedyNAS' candidate pool P)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.losses: dict[Arch, float] = {}

    def __len__(self) -> int:
        return len(self.losses)

    def __contains__(self, arch: Arch) -> bool:
        return arch in self.losses

    def update(self, arch: Arch, loss: float) -> bool:
        """Offer a path with its loss; returns whether it is in the pool afterwards."""
        if arch in self.losses or len(self.losses) < self.size:
            self.losses[arch] = loss
            return True
        worst = max(self.losses, key=self.losses.__getitem__)
        if loss < self.losses[worst]:
            del self.losses[worst]
            self.losses[arch] = loss
            return True
        return False

    def archs(self) -> list[Arch]:
        """Paths from lowest to highest loss."""
        return sorted(self.losses, key=self.losses.__getitem__)

    def sample(self, rng: random.Random) -> Arch:
        return rng.choice(list(self.losses))

    def state(self) -> list[tuple[Arch, float]]:
        return list(self.losses.items())

    def load(self, state: Sequence[tuple[Sequence[int], float]]) -> None:
        self.losses = {tuple(a): float(v) for a, v in state}


@dataclass
class GreedyNASHparams(SPOSHparams):
    bn_affine: bool = True  # mmrazor's GreedyNAS supernet keeps affine BNs (SPOS's official one does not)
    num_paths: int = 10  # m: paths sampled and evaluated per iteration (paper: 10)
    num_kept: int = 5  # k: lowest-loss paths kept and trained (paper: 5)
    pool_size: int = 1000  # candidate pool size (paper: 1000)
    epsilon_max: float = 0.8  # probability of sampling from the pool, reached linearly at the end (paper: 0.8)
    val_batch_size: Optional[int] = None  # examples of the fixed search-val subset that scores paths; null: batch_size
    warmup_iters: Optional[int] = None  # uniform single-path weight steps first; null: 1/15 of the search's steps
    rescore_every: int = 10  # epochs between re-scorings of the whole pool on the current weights (0: never)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_kept <= self.num_paths:
            raise ConfigError(f"method.params: need 1 <= num_kept <= num_paths, got {self.num_kept} and "
                              f"{self.num_paths}.")
        if self.pool_size < 1 or not 0.0 <= self.epsilon_max <= 1.0:
            raise ConfigError(f"method.params: pool_size must be >= 1 and epsilon_max in [0, 1], got "
                              f"{self.pool_size} and {self.epsilon_max}.")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ConfigError(f"method.params.val_batch_size must be >= 1 or null, got {self.val_batch_size}.")
        if self.warmup_iters is not None and self.warmup_iters < 0:
            raise ConfigError(f"method.params.warmup_iters must be >= 0 or null, got {self.warmup_iters}.")
        if self.rescore_every < 0:
            raise ConfigError(f"method.params.rescore_every must be >= 0 (0: never), got {self.rescore_every}.")


@register_method("greedynas")
class GreedyNAS(SPOS):
    Hparams = GreedyNASHparams
    host_reads_per_step = {
        "path_losses": "the k-of-m filter orders the m paths by their losses: one device read per greedy iteration",
    }

    def build(self) -> None:
        hp = self.hp
        super().build()
        self.pool = CandidatePool(hp.pool_size)
        total_steps = self.ctx.budget.search_epochs * self.steps_per_epoch
        self.warmup_steps = min(total_steps, hp.warmup_iters if hp.warmup_iters is not None else total_steps // 15)
        self.total_iterations = math.ceil((total_steps - self.warmup_steps) / hp.num_kept)
        self.iteration = 0
        self.weight_steps = 0
        self.stats = {"paths_evaluated": 0, "paths_trained": 0, "pool_size": 0, "paths_rescored": 0}
        # the fixed search-val subset that scores every path (drawn once; its own stream, so training's is unchanged)
        val = self.ctx.data.val
        n = min(len(val), hp.val_batch_size or self.ctx.budget.batch_size)
        idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(self.ctx.seed))[:n].to(val.y.device)
        self.path_val = (val.x[idx].contiguous(memory_format=torch.channels_last), val.y[idx])

    def epsilon(self, iteration: int) -> float:
        """Exploitation probability: 0 at the first iteration, epsilon_max at the last, linear in between."""
        return self.hp.epsilon_max * min(1.0, iteration / max(1, self.total_iterations - 1))

    def sample_paths(self, eps: float) -> list[Arch]:
        return [self.pool.sample(self.rng) if len(self.pool) and self.rng.random() < eps else self.sample_arch()
                for _ in range(self.hp.num_paths)]

    @torch.no_grad()
    def path_losses(self, archs: Sequence[Arch], x: torch.Tensor, y: torch.Tensor) -> list[float]:
        """Validation cross-entropy of each path on the batch (x, y), BatchNorm on batch statistics; read back in
        one host sync (the k-of-m filter orders them)."""
        with batch_stat_bn(self.supernet):
            losses = [F.cross_entropy(self.supernet(x, self.path_of(a)), y) for a in archs]
        return torch.stack(losses).float().tolist() if losses else []

    def greedy_iteration(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                         max_steps: int) -> list[torch.Tensor]:
        """Sample m paths, keep the k of lowest val loss, update the pool, train up to `max_steps` of them (one
        weight step each on the next training batch); returns their training losses (on the device)."""
        candidates = self.sample_paths(self.epsilon(self.iteration))
        losses = self.path_losses(candidates, *self.path_val)
        kept = sorted(range(len(candidates)), key=losses.__getitem__)[:self.hp.num_kept]
        for i in kept:
            self.pool.update(candidates[i], losses[i])
        train_losses = []
        for i in kept[:max_steps]:
            x, y = next(batches)
            train_losses.append(self.weight_step(self.path_of(candidates[i]), x, y))
        self.weight_steps += len(train_losses)
        self.iteration += 1
        self.stats["paths_evaluated"] += len(candidates)
        self.stats["paths_trained"] += len(train_losses)
        self.stats["pool_size"] = len(self.pool)
        return train_losses

    def rescore_pool(self) -> None:
        """Score every pool path again on the fixed subset with the current weights (losses from earlier weights are
        not comparable with new ones); the pool keeps its size, now by the fresh losses."""
        archs = list(self.pool.losses)
        self.pool.losses = dict(zip(archs, self.path_losses(archs, *self.path_val), strict=True))
        self.stats["paths_rescored"] += len(archs)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        batches = iter(self.train_batches())
        remaining = self.steps_per_epoch  # the same weight steps per epoch as SPOS
        steps = EpochMeans()
        while remaining > 0 and self.weight_steps < self.warmup_steps:  # uniform warm-up, one path per batch
            x, y = next(batches)
            steps.add("train_loss", self.weight_step(self.path_of(self.sample_arch()), x, y), self.training_where)
            self.weight_steps += 1
            remaining -= 1
        while remaining > 0:
            step_losses = self.greedy_iteration(batches, remaining)
            if not step_losses:
                break
            for loss in step_losses:
                steps.add("train_loss", loss, self.training_where)
            remaining -= len(step_losses)
        if self.hp.rescore_every and (epoch + 1) % self.hp.rescore_every == 0 and len(self.pool):
            self.rescore_pool()
        return {**steps.means(), "lr": self.w_scheduler.get_last_lr()[0],
                "epsilon": self.epsilon(max(0, self.iteration - 1)), **{k: float(v) for k, v in self.stats.items()}}

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """SPOS' evolutionary search, its initial population taken from the candidate pool (best paths first)."""
        self.evolution = evolutionary_search(
            self.ctx.space, self.cached("derive", self.supernet_accuracy), self.rng, **self.evolution_settings(),
            initial=self.pool.archs(), pool=self.ctx.arch_pool)
        return sorted(self.evolution.evaluated.items(), key=lambda item: -item[1])

    def artifacts(self) -> dict[str, Any]:
        enc = self.ctx.space.encode
        return {"greedynas_pool": [{"arch": enc(a), "val_loss": self.pool.losses[a]} for a in self.pool.archs()]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pool": self.pool.state(), "iteration": self.iteration,
                "weight_steps": self.weight_steps, "stats": dict(self.stats)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pool.load(state["pool"])
        self.iteration = state["iteration"]
        self.weight_steps = state["weight_steps"]
        self.stats = dict(state["stats"])
