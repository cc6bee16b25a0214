"""Shared machinery of weight-sharing methods: one supernet, an SGD weight optimizer with cosine decay, single-path
weight steps, and scoring a subnet by its supernet accuracy under the run's BN scoring mode (`scoring.bn_mode`,
`methods/bn_scoring.py`)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.config import BnMode
from oneshot_bench.device import host_to
from oneshot_bench.training import accuracy, cosine, optimizer_step, sgd, steps_per_epoch
from search_spaces.base import ENCODE, SAMPLE, SUPERNET, Arch, Path
from search_spaces.ops import make_choice_bn_non_affine

from .base import Method
from .bn_scoring import bn_scoring


class SupernetMethod(Method):
    required_capabilities = frozenset({SAMPLE, ENCODE, SUPERNET})
    # scores subnets by their supernet accuracy, so `scoring.bn_mode` applies (and is part of the run's identity)
    bn_modes_apply = True

    def build(self) -> None:
        ctx = self.ctx
        self.supernet = ctx.space.build_supernet(ctx.net)
        if not self.choice_bn_affine():
            make_choice_bn_non_affine(self.supernet)
        self.supernet = self.supernet.to(ctx.device).to(memory_format=torch.channels_last)
        self.steps_per_epoch = steps_per_epoch(len(ctx.data.train), ctx.budget.batch_size)
        self.w_optimizer = sgd(self.weight_parameters(), ctx.budget.lr, ctx.budget.momentum, ctx.budget.weight_decay)
        self.w_scheduler = cosine(self.w_optimizer, ctx.budget.search_epochs * self.steps_per_epoch)

    def choice_bn_affine(self) -> bool:
        """Whether the BNs inside the candidate ops learn a scale and shift (the harness' shared supernet); methods
        whose official supernet builds them with `affine=False` (SPOS, DARTS) make it a hyperparameter."""
        return bool(getattr(self.hp, "bn_affine", True))

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        return self.supernet.parameters()

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.ctx.budget
        return self.ctx.data.batches("train", b.batch_size, self.generator, max_batches=self.steps_per_epoch)

    @property
    def training_where(self) -> str:
        """Where a non-finite training loss happened, for the DivergenceError (oneshot_bench.training.EpochMeans)."""
        return f"{self.name} supernet training"

    def weight_step(self, path: Path, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step (and cosine LR step) of the supernet weights on the sub-network `path`; the detached loss,
        on the device (no host sync)."""
        self.supernet.train()
        return optimizer_step(F.cross_entropy(self.supernet(x, path), y), self.w_optimizer, self.supernet,
                              self.ctx.budget.grad_clip, self.w_scheduler)

    def random_val_batch(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random search-val minibatch of n images (default: the budget's batch size), no augmentation."""
        val = self.ctx.data.val
        idx = torch.randperm(len(val), generator=self.generator)[:n or self.ctx.budget.batch_size]
        idx = host_to(idx, val.y.device)
        return val.x[idx].contiguous(memory_format=torch.channels_last), val.y[idx]

    def path_of(self, arch: Arch) -> list[int]:
        return self.ctx.space.arch_to_path(arch)

    @property
    def bn_mode(self) -> BnMode:
        """`scoring.bn_mode`, or where unset the space's default (`SearchSpace.scoring_bn_mode`)."""
        return self.ctx.scoring.bn_mode or self.ctx.space.scoring_bn_mode

    def supernet_accuracy(self, arch: Arch, max_batches: int | None = None, mode: BnMode | None = None) -> float:
        """Validation accuracy of `arch` with inherited supernet weights, on the same fixed val batches for every
        arch, with BatchNorm as `mode` says (default: the run's `scoring.bn_mode`); a recalibrating mode
        re-estimates on the same fixed train batches for every arch (plan_run refuses
        budget.bn_recalibration_batches=0 for one). The supernet is left exactly as it was."""
        b = self.ctx.budget
        path = self.path_of(arch)
        forward = lambda x: self.supernet(x, path)  # noqa: E731
        mode = mode or self.bn_mode
        calibration = lambda: self.ctx.data.batches(  # noqa: E731
            "train", b.batch_size, torch.Generator().manual_seed(self.ctx.seed),
            max_batches=b.bn_recalibration_batches)
        with bn_scoring(self.supernet, mode, forward, calibration):
            return accuracy(forward, self.ctx.data.batches("val", b.batch_size, self.generator, shuffle=False,
                                                           augment=False, max_batches=max_batches or b.score_batches))

    def score(self, archs: list[Arch]) -> list[float]:
        return [self.supernet_accuracy(a) for a in archs]

    def scores_under_modes(self, arch: Arch, modes: list[BnMode]) -> dict[str, float]:
        """`arch`'s supernet accuracy under each of `modes`, as extra proxies named "bn:<mode>" (the runner's
        `scoring.also_bn_modes`, on the final ranking only)."""
        return {f"bn:{m}": self.supernet_accuracy(arch, mode=m) for m in modes}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "supernet": self.supernet.state_dict(),
                "w_optimizer": self.w_optimizer.state_dict(), "w_scheduler": self.w_scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.supernet.load_state_dict(state["supernet"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.w_scheduler.load_state_dict(state["w_scheduler"])
