"""Training and evaluation loops shared by methods and ground truth: standalone training, accuracy, BN recalibration."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import TrainConfig, TrainingExtras
from .data import DataBundle, cutout_batch
from .errors import ConfigError, DivergenceError
from .exits import accuracies as exit_accuracies
from .exits import correct_per_exit, task_loss

Forward = Callable[[torch.Tensor], torch.Tensor]
NO_EXTRAS = TrainingExtras()


DIVERGENCE_CHECK_STEPS = 50  # a training loop reads its loss flags back every this many steps (one host sync)


def nonfinite_message(where: str) -> str:
    return (f"the loss became non-finite (nan or inf) during {where}. Lower the learning rate (budget.lr / method "
            f"lr) or raise gradient clipping (budget.grad_clip); the run's last checkpoint is kept.")


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Fail now on a non-finite value (a host sync: for checks outside per-step loops)."""
    if not torch.isfinite(loss):
        raise DivergenceError(nonfinite_message(where))


class EpochMeans:
    """The per-step scalars of a training epoch (losses, statistics), summed on their device and read back once, in
    `means()`: a training step never waits for the device. Values added with a `where` are losses that must stay
    finite; their flags are read every `check_every` of them (and in `means()`), so a diverging run stops within
    that many steps with a DivergenceError naming where. Steps after a non-finite loss only touch weights that
    are discarded: the error comes before the epoch's checkpoint."""

    def __init__(self, check_every: int = DIVERGENCE_CHECK_STEPS):
        self.check_every = check_every
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.finite: dict[str, torch.Tensor] = {}  # where -> all values so far finite (a device bool)
        self.unchecked = 0

    def add(self, name: str, value: torch.Tensor | float, where: Optional[str] = None) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + 1
        if where is not None:
            ok = torch.isfinite(torch.as_tensor(value))
            self.finite[where] = self.finite[where] & ok if where in self.finite else ok
            self.unchecked += 1
            if self.unchecked >= self.check_every:
                self.check()

    def check(self) -> None:
        """One host sync: raise DivergenceError for the first `where` whose values were not all finite."""
        self.unchecked = 0
        if not self.finite:
            return
        flags = _read_back(list(self.finite.values()))
        for where, ok in zip(self.finite, flags, strict=True):
            if not ok:
                raise DivergenceError(nonfinite_message(where))

    def means(self) -> dict[str, float]:
        """Every name's mean over its steps (one host sync), after the divergence check."""
        self.check()
        if not self.sums:
            return {}
        sums = _read_back(list(self.sums.values()))
        return {k: total / self.counts[k] for k, total in zip(self.sums, sums, strict=True)}


def _read_back(values: list[torch.Tensor | float]) -> list[float]:
    """Scalars (device tensors or floats) as floats, stacked on their device and copied back in one read."""
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]).tolist()


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, module: nn.Module, grad_clip: float,
                   scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None) -> torch.Tensor:
    """The one training step every loop takes: backpropagate (outside autocast), clip the gradient norm of
    `module`'s parameters at `grad_clip`, step the optimizer and the LR schedule; return the detached loss, still on
    the device (add it to the epoch's EpochMeans with its `where`: that is where divergence is caught). No host
    sync. Parameters that received no gradient keep grad None (`set_to_none`), so the optimizer neither decays nor
    moves them."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(loss.device.type, enabled=False):
        loss.backward()
    nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach()


def sgd(params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


@torch.no_grad()
def accuracy(forward: Forward, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy in percent over the given batches (counted on the device, read once)."""
    correct: torch.Tensor | int = 0
    total = 0
    for x, y in batches:
        correct = correct + (forward(x).argmax(1) == y).sum()
        total += len(y)
    return 100.0 * int(correct) / max(1, total)


@torch.no_grad()
def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """How many images have their label among the k highest logits, for each k (a device tensor; no host sync)."""
    top = logits.topk(max(ks), dim=1).indices == y[:, None]  # images x max(k), one True at most per row
    return torch.stack([top[:, :k].any(1).sum() for k in ks])


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm of `module`, in module order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(module: nn.Module, forward: Forward, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   only: Optional[Sequence[nn.Module]] = None) -> None:
    """Re-estimate BatchNorm statistics for the sub-network that `forward` runs (SPOS, Guo et al. 2020): running
    stats of shared BN layers are a mixture over all paths and mislead the ranking otherwise. Every BN is reset and
    re-estimated with the whole module in training mode; with `only`, just those BNs, the rest of the module in eval
    mode (the other BNs normalise with their statistics as they are). A cumulative average over the batches; the
    module's train/eval flags and the momenta are restored afterwards."""
    bns = list(only) if only is not None else batchnorms(module)
    momenta = [bn.momentum for bn in bns]
    flags = [(m, m.training) for m in module.modules()]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    if only is None:
        module.train()
    else:
        module.eval()
        for bn in bns:
            bn.train()
    for x, _ in batches:
        forward(x)
    for m, training in flags:
        m.training = training
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m


@contextmanager
def batch_stat_bn(module: nn.Module) -> Iterator[None]:
    """Run `module` in training mode (BatchNorm normalises with the batch's own statistics) without changing any
    running statistic (momentum 0 keeps them as they are); restores mode and momenta afterwards. Used for quick
    per-batch rewards/losses of sampled paths (ENAS, GreedyNAS)."""
    bns = batchnorms(module)
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
                     extras: TrainingExtras = NO_EXTRAS, desc: str = "standalone",
                     eval_splits: tuple[str, ...] = ("val", "test"), keep_correct: bool = False,
                     progress: Optional[bool] = None) -> dict[str, Any]:
    """Train `net` from scratch with SGD + cosine LR; return accuracies (percent) on `eval_splits`, and with
    `keep_correct` each split's per-image correctness (`<split>_correct`, a bool array). A multi-exit net
    (`oneshot_bench.exits`) trains on all its classifiers' losses; `<split>_acc` is its last classifier's and
    `<split>_exit_acc` lists every classifier's. `extras` are a final
    training protocol's regularisers: cutout on training images, drop-path ramped from 0 over the epochs (DARTS'
    schedule) and an auxiliary head's loss; a net that cannot do one it is asked for is a ConfigError."""
    generator = torch.Generator().manual_seed(seed)
    net = net.to(device).to(memory_format=torch.channels_last)
    if extras.drop_path > 0 and not hasattr(net, "drop_path_prob"):
        raise ConfigError(f"{type(net).__name__} has no drop-path; set selection.drop_path=0.")
    if extras.auxiliary_weight > 0:
        if not hasattr(net, "enable_auxiliary"):
            raise ConfigError(f"{type(net).__name__} has no auxiliary head; set selection.auxiliary_weight=0.")
        net.enable_auxiliary()
        net.to(device).to(memory_format=torch.channels_last)
    cutout = round(extras.cutout * data.resolution / 32)  # the protocol's length is given at 32 px
    n_train = min(len(data.train), cfg.max_train_images or len(data.train))
    steps = steps_per_epoch(n_train, cfg.batch_size)
    opt = sgd(net.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = cosine(opt, cfg.epochs * steps)
    net.train()
    bar = tqdm(total=cfg.epochs * steps, desc=desc, leave=False, disable=progress is False or None)
    for epoch in range(cfg.epochs):
        if extras.drop_path > 0:
            net.drop_path_prob = extras.drop_path * epoch / cfg.epochs
        losses = EpochMeans()
        for x, y in data.batches("train", cfg.batch_size, generator, max_batches=steps):
            loss = task_loss(net, net(cutout_batch(x, cutout, generator)), y)
            if extras.auxiliary_weight > 0:
                loss = loss + extras.auxiliary_weight * F.cross_entropy(net.aux_logits, y)
            losses.add("loss", optimizer_step(loss, opt, net, cfg.grad_clip, sched), f"{desc} training (epoch {epoch})")
            bar.update()
        losses.check()
    bar.close()
    net.eval()
    out: dict[str, Any] = {}
    multi_exit = hasattr(net, "exit_logits")
    for split in eval_splits:
        per_exit = correct_per_exit(net, net, data.batches(split, 256, generator, shuffle=False, augment=False))
        correct = per_exit[-1]  # the last classifier's: the net's prediction
        out[f"{split}_acc"] = 100.0 * float(correct.float().mean()) if len(correct) else 0.0
        if multi_exit:
            out[f"{split}_exit_acc"] = exit_accuracies(per_exit)
        if keep_correct:
            out[f"{split}_correct"] = correct.numpy()
    return out
