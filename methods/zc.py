"""Zero-cost reference scorers: rank architectures without training anything (the references every measurement
of this harness is read against). `method=zc method.params.proxy=<name>`; `proxy=all` computes every proxy in one
run, reports synflow as its own score and every proxy as an extra proxy.

Each proxy scores an arch's standalone network at the budget's search size, freshly initialised from a seed that
depends on the run's seed and the arch alone, in training mode (BatchNorm on batch statistics), on ONE fixed batch
of training images (`batch_size`, the same batch for every arch). The definitions follow the papers, with the
conventions NASLib's implementation (automl/NASLib, naslib/predictors/utils/pruners) uses where they change ranks:

- params: trainable parameters. flops: FLOPs of one image (FlopCounterMode, a multiply-add = 2).
- synflow (Tanaka et al. 2020): on a copy without BatchNorm (NASLib: bn=False), in float64, every parameter made
  positive, an all-ones input image; log of sum over conv/linear weights of |w * d(sum of outputs)/dw|.
- snip (Lee et al. 2019): sum over conv/linear weights of |w * dL/dw| (= |dL/d mask| at mask 1), L the
  cross-entropy of the batch.
- grad_norm: sum over conv/linear layers of the L2 norm of dL/dw.
- jacov (Mellor et al. 2021, v1): J = d(sum of logits)/d(input image) per image; with the correlation matrix's
  eigenvalues v, -sum(log(v + 1e-5) + 1 / (v + 1e-5)).
- nwot (NASWOT, Mellor et al. 2021, v2): every ReLU's input as a binary code per image; K = sum over ReLUs of
  (c c^T + (1 - c)(1 - c)^T); log |det K|.
- fisher (Theis et al. 2018, as pruning's channel saliency): per conv/linear output channel k,
  0.5 * mean over images of (sum over positions of activation * dL/dactivation)^2, broadcast to the channel's
  weights as NASLib does (times the weights per output channel), summed.
- grasp (Wang et al. 2020): with g = dL/dw and H the Hessian, sum over conv/linear weights of -w * (H g).

Checked against NASLib's own scores of 725 NB201 archs (tests/test_method_zc.py, the README's oracle table).
Ranking cost: scoring the shared sample is evaluation work like every method's; scoring `candidates` archs is its
search (seconds). `train_epoch` does nothing: there is nothing to train.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from oneshot_bench.config import Choice
from oneshot_bench.errors import ConfigError
from oneshot_bench.exits import task_loss
from oneshot_bench.measure import count_flops, count_params
from oneshot_bench.training import seeded
from search_spaces.base import ENCODE, SAMPLE, STANDALONE, Arch

from .base import Method, rank, register_method


class Proxy(Choice):
    params = "params"
    flops = "flops"
    synflow = "synflow"
    snip = "snip"
    grad_norm = "grad_norm"
    jacov = "jacov"
    nwot = "nwot"
    fisher = "fisher"
    grasp = "grasp"
    all = "all"


PROXIES = tuple(p for p in Proxy if p != Proxy.all)
LAYERS = (nn.Conv2d, nn.Linear)


@dataclass
class ZCHparams:
    proxy: Proxy = Proxy.synflow  # which proxy ranks (all: every proxy in one run, synflow as the run's own)
    batch_size: Optional[int] = None  # images in the one batch; null: budget.batch_size (NASLib's setting: 64)
    # mean over this many (batch, initialisation) draws; 1 is the papers' and NASLib's single draw. jacov and
    # grasp vary between draws (two draws of one arch set agree at Spearman ~0.9 and ~0.8): more draws average it
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"method.params.batch_size must be >= 2 (jacov and nwot compare images), got "
                              f"{self.batch_size}.")
        if self.repeats < 1:
            raise ConfigError(f"method.params.repeats must be >= 1 (draws averaged per arch), got {self.repeats}.")


def _weights(net: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in net.modules() if isinstance(m, LAYERS)]


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss the loss-based proxies differentiate: cross-entropy, the mean over a multi-exit net's classifiers."""
    return task_loss(net, net(x), y)


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(net)
    for m in net.modules():  # NASLib's bn=False: BatchNorm layers pass their input through
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = lambda inp: inp  # type: ignore[method-assign]
    net = net.double()
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad()
    net(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)).sum().backward()
    total = sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(net) if w.grad is not None)
    return math.log(total) if total > 0 else (-math.log(-total) if total < 0 else 0.0)


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = _weights(net)
    grads = torch.autograd.grad(_loss(net, x, y), weights, allow_unused=True)
    return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads, strict=True) if g is not None)


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = _weights(net)
    grads = torch.autograd.grad(_loss(net, x, y), weights, allow_unused=True)
    return sum(float(g.norm()) for g in grads if g is not None)


def jacov(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(net(x).sum(), x)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant row gives NaN, handled below
        corr = np.corrcoef(jacobian.reshape(len(x), -1).double().cpu().numpy())
    if not np.all(np.isfinite(corr)):
        return -1e8  # a constant Jacobian row (NASLib scores a failure the same way)
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def nwot(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal kernel
        codes = (inputs[0].detach().reshape(len(x), -1) > 0).double()
        kernel = kernel + codes @ codes.t() + (1 - codes) @ (1 - codes).t()

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel.cpu())[1])


def fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    outputs: list[tuple[nn.Module, torch.Tensor]] = []

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        output.retain_grad()
        outputs.append((module, output))

    hooks = [m.register_forward_hook(keep) for m in net.modules() if isinstance(m, LAYERS)]
    try:
        _loss(net, x, y).backward()
    finally:
        for h in hooks:
            h.remove()
    total = 0.0
    for module, act in outputs:
        if act.grad is None:
            continue
        g = (act * act.grad).sum(tuple(range(2, act.dim()))) if act.dim() > 2 else act * act.grad
        per_channel = g.detach().pow(2).mean(0).mul(0.5)
        total += float(per_channel.sum()) * math.prod(module.weight.shape[1:])
    net.zero_grad(set_to_none=True)
    return total


def grasp(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = _weights(net)
    first = torch.autograd.grad(_loss(net, x, y), weights, allow_unused=True)
    second = torch.autograd.grad(_loss(net, x, y), weights, create_graph=True, allow_unused=True)
    z = sum((g1.detach() * g2).sum() for g1, g2 in zip(first, second, strict=True)
            if g1 is not None and g2 is not None)
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    return sum(float((-w.detach() * h).sum()) for w, h in zip(weights, hg, strict=True) if h is not None)


DATA_PROXIES: dict[Proxy, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    Proxy.synflow: synflow, Proxy.snip: snip, Proxy.grad_norm: grad_norm, Proxy.jacov: jacov, Proxy.nwot: nwot,
    Proxy.fisher: fisher, Proxy.grasp: grasp}


@register_method("zc")
class ZeroCost(Method):
    Hparams = ZCHparams
    trains = False
    required_capabilities = frozenset({SAMPLE, ENCODE, STANDALONE})

    def build(self) -> None:
        ctx = self.ctx
        n = self.hp.batch_size or ctx.budget.batch_size
        gen = torch.Generator().manual_seed(ctx.seed)  # the same fixed (augmented) batches for every arch
        self.batches = [next(ctx.data.batches("train", n, gen)) for _ in range(self.hp.repeats)]
        self.proxies = PROXIES if self.hp.proxy == Proxy.all else (self.hp.proxy,)
        self.own = Proxy.synflow if self.hp.proxy == Proxy.all else self.hp.proxy
        self.derive_scores = self.cached("derive", lambda arch: self.scores(arch)[self.own])

    def scores(self, arch: Arch) -> dict[Proxy, float]:
        """Every configured proxy of one arch, each on a fresh copy of its seeded initial network (the mean over
        `repeats` draws of batch and initialisation for the proxies that see data)."""
        ctx = self.ctx
        out: dict[Proxy, float] = {}
        for proxy in self.proxies:
            values = []
            for draw, batch in enumerate(self.batches):
                seed = self.arch_seed(arch, "zc" if draw == 0 else f"zc/{draw}")
                net = seeded(lambda seed=seed: ctx.space.build_standalone(arch, ctx.net), seed).to(ctx.device)
                net.train()
                if proxy == Proxy.params:
                    out[proxy] = float(count_params(net))
                    break
                if proxy == Proxy.flops:
                    out[proxy] = float(count_flops(net, ctx.data.in_channels, ctx.data.resolution))
                    break
                with torch.random.fork_rng(devices=[]):  # nothing a proxy draws moves the run's random stream
                    torch.manual_seed(seed)
                    value = DATA_PROXIES[proxy](net, *batch)
                values.append(value if math.isfinite(value) else -1e8)  # NASLib's score of a failed proxy
            if values:
                out[proxy] = sum(values) / len(values)
        return out

    def score(self, archs: list[Arch]) -> list[float]:
        all_scores = [self.scores(a) for a in archs]
        self.extra_scores = ({str(p): [s[p] for s in all_scores] for p in self.proxies if p != self.own}
                             if len(self.proxies) > 1 else {})
        return [s[self.own] for s in all_scores]

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """`n` archs (from the truth's subset when it covers one) ranked by the run's own proxy."""
        return rank(self.candidate_archs(n), self.derive_scores, f"zc {self.own} search")

    def artifacts(self) -> dict[str, Any]:
        return {}
