"""Training and evaluation loops shared by methods and ground truth: standalone training, accuracy, BN recalibration."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import DataBundle
from .errors import DivergenceError

Forward = Callable[[torch.Tensor], torch.Tensor]


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise DivergenceError(
            f"the loss became {loss.item()} during {where}. Lower the learning rate (budget.lr / method lr) or "
            f"raise gradient clipping (budget.grad_clip); the run's last checkpoint is kept.")


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, module: nn.Module, grad_clip: float,
                   scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None, *, where: str) -> float:
    """The one training step every loop takes: fail on a non-finite loss (naming `where`), backpropagate, clip the
    gradient norm of `module`'s parameters at `grad_clip`, step the optimizer and the LR schedule. Parameters that
    received no gradient keep grad None (`set_to_none`), so the optimizer neither decays nor moves them."""
    check_finite(loss, where)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


def sgd(params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


@torch.no_grad()
def accuracy(forward: Forward, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy in percent over the given batches."""
    correct = total = 0
    for x, y in batches:
        correct += (forward(x).argmax(1) == y).sum().item()
        total += len(y)
    return 100.0 * correct / max(1, total)


@torch.no_grad()
def recalibrate_bn(module: nn.Module, forward: Forward, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate BatchNorm statistics for the sub-network that `forward` runs (SPOS, Guo et al. 2020, Sec. 3.4):
    running stats of shared BN layers are a mixture over all paths and mislead the ranking otherwise."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    was_training = module.training
    module.train()
    for x, _ in batches:
        forward(x)
    module.train(was_training)
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m


@contextmanager
def batch_stat_bn(module: nn.Module) -> Iterator[None]:
    """Run `module` in training mode (BatchNorm normalises with the batch's own statistics) without changing any
    running statistic (momentum 0 keeps them as they are); restores mode and momenta afterwards. Used for quick
    per-batch rewards/losses of sampled paths (ENAS, GreedyNAS)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    was_training = module.training
    module.train()
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        module.train(was_training)


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """`build()` with its weights drawn from `seed` alone, leaving torch's global random stream as it was: a
    network's initial weights then depend on nothing that ran before (resumed runs, caches, other methods)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_standalone(net: nn.Module, data: DataBundle, cfg: TrainConfig, device: torch.device, seed: int, *,
                     desc: str = "standalone", eval_splits: tuple[str, ...] = ("val", "test"),
                     progress: Optional[bool] = None) -> dict[str, float]:
    """Train `net` from scratch with SGD + cosine LR; return accuracies (percent) on `eval_splits`."""
    generator = torch.Generator().manual_seed(seed)
    net = net.to(device).to(memory_format=torch.channels_last)
    n_train = min(len(data.train), cfg.max_train_images or len(data.train))
    steps = steps_per_epoch(n_train, cfg.batch_size)
    opt = sgd(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = cosine(opt, cfg.epochs * steps)
    net.train()
    bar = tqdm(total=cfg.epochs * steps, desc=desc, leave=False, disable=progress is False or None)
    for epoch in range(cfg.epochs):
        for x, y in data.batches("train", cfg.batch_size, generator, max_batches=steps):
            optimizer_step(F.cross_entropy(net(x), y), opt, net, cfg.grad_clip, sched,
                           where=f"{desc} training (epoch {epoch})")
            bar.update()
    bar.close()
    net.eval()
    return {f"{split}_acc": accuracy(net, data.batches(split, 256, generator, shuffle=False, augment=False))
            for split in eval_splits}
