"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019).

Every supernet choice point (an edge of a cell, a layer of a chain) becomes a mixed op: the softmax over
its architecture parameters alpha weights the sum of all candidates (`WeightedChoice(all indices, softmax(alpha))`).
Weights w and alphas are trained by alternating, per training batch (Alg. 1 of the paper, `train_search.py`):

1. an architecture step on a search-val batch with Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3):
   - `order: 1`: grad_alpha L_val(w, alpha) at the current weights;
   - `order: 2`: the unrolled gradient of L_val(w', alpha) with w' = w - xi * grad_w L_train(w, alpha) (Eq. 6/7,
     xi = the current weight learning rate), whose second-order term is the finite-difference Hessian-vector
     product of Eq. 8:  grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha)
     - grad_alpha L_train(w-, alpha)) / (2 eps),  w+- = w +- eps * grad_w' L_val(w', alpha),
     eps = 0.01 / ||grad_w' L_val(w', alpha)||;
2. a weight step (the shared SGD optimizer and cosine schedule) on the training batch through the full mixed
   supernet with the alphas held fixed.

As in the official code, the search-val batches are augmented like training batches (both of its queues read the
training set with the training transform). `unrolled_momentum_wd: true` makes the virtual step of order 2 include
the weight optimizer's momentum buffer and weight decay as the official `architect.py` does; the default is the
paper's plain gradient step (Eq. 6). Neither changes the Hessian term.

Derive: `space.derive_from_weights(softmax(alpha))` (argmax per choice point, within the space's input-selection
constraints: a DARTS cell keeps the top-2 incoming edges per node, the zero op excluded). With a ground truth that
covers only a subset of the space (truth=nb301), derive picks the covered arch most likely under softmax(alpha)
instead, so its accuracy is a lookup: an adaptation, not the paper's rule. Ranking: supernet
accuracy of each sampled arch's single path (BN as below); `score` also stores, in
`extra_scores["alpha_log_likelihood"]`, each arch's log-likelihood under the architecture distribution, sum over
choice points of log softmax(alpha)[chosen op] (on the edges an arch leaves unused, the zero op's entry).

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): DARTS scores no single path with shared weights; it
derives from the alphas (`genotype`, cnn/model_search.py), uses batch-specific BN statistics during the search (paper,
App. A.1.1), and the official `infer` (cnn/train_search.py) evaluates only the whole mixed supernet, in eval mode. Here
the mode applies only to the ranking of the shared sample (`score`, a proxy of this harness), not to derive or `ranked`
(the alphas alone); default: the space's (`SearchSpace.scoring_bn_mode`: batch_stats_choice on the NAS-Bench-201 space,
chosen across seeds in issue 28; recalibrate_all elsewhere); no mode is the paper's, which has no such score.

`ArchDistributionMethod` (alpha bookkeeping, derive, second proxy, checkpoints) and the alpha helpers are shared with
ProxylessNAS.

As in quark0/darts' search model, the BNs inside the mixed ops have no scale or shift (`bn_affine: false`), so the
alphas alone weigh the candidates; subnets still copy exactly into affine standalone nets (scale 1, shift 0).
As in its MixedOp, each pooling candidate (by the space's op traits) is followed by a non-affine BN in the mixed
sum (`bn_after_pooling`), so pooling outputs compete with normalised conv outputs on the same scale; single paths
(scoring, and the copy into standalone nets) run the plain pooling, as the derived network does.
Departures from the official code: the stem and cell-preprocessing BNs follow the space (affine; the official
preprocessing is not). The official search uses weight lr 0.025 (cosine to 0.001), batch 64 and 50 epochs:
`budget=paper_darts` (the shared `budget=paper` uses the harness' lr 0.1 and 100 epochs for every method).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.errors import ConfigError, DivergenceError
from oneshot_bench.training import EpochMeans
from search_spaces.base import Arch, Path, WeightedChoice
from search_spaces.ops import add_bn_after_pooling

from .base import distinct_archs, register_method
from .supernet import SupernetMethod

# ---- architecture parameters (shared with methods/proxylessnas.py) ---------------------------------------------------

def init_alphas(supernet: nn.Module, std: float, generator: torch.Generator,
                device: torch.device) -> list[nn.Parameter]:
    """One parameter vector per supernet choice point (length = its number of candidates), std * N(0, 1)."""
    return [nn.Parameter((std * torch.randn(len(cp.candidates), generator=generator)).to(device))
            for cp in supernet.choice_points]


def alpha_probs(alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [F.softmax(a, dim=-1) for a in alphas]


def alpha_log_likelihood(alphas: Sequence[torch.Tensor], path: Sequence[int]) -> float:
    """Log-probability of a single path under the factorized distribution softmax(alpha) per choice point."""
    if len(path) != len(alphas):
        raise ValueError(f"path has {len(path)} entries for {len(alphas)} choice points")
    with torch.no_grad():
        return float(sum(F.log_softmax(a.detach().float(), dim=-1)[k] for a, k in zip(alphas, path, strict=True)))


def alpha_entropy(alphas: Sequence[torch.Tensor]) -> float:
    """Mean entropy (nats) of the per-choice-point distributions."""
    with torch.no_grad():
        ent = [-(F.softmax(a, -1) * F.log_softmax(a, -1)).sum() for a in alphas]
        return float(sum(ent) / len(ent))


# ---- DARTS -----------------------------------------------------------------------------------------------------------

class ArchDistributionMethod(SupernetMethod):
    """A supernet method with one vector of architecture logits (alpha) per choice point, kept outside the supernet
    and trained by `self.a_optimizer` (DARTS, ProxylessNAS). Derive = the space's discretisation of softmax(alpha);
    the alpha log-likelihood of each scored arch is reported as a second proxy."""

    # |alpha| beyond this saturates a softmax past e^-100: no sane run gets there (Adam moves an alpha by about its
    # learning rate per step, 3e-4 x 20k DARTS steps = 6), a too-large arch_lr does within an epoch
    ALPHA_LIMIT = 100.0

    def arch_probs(self) -> list[torch.Tensor]:
        return [p.detach().cpu() for p in alpha_probs(self.alphas)]

    def check_alphas(self, epoch: int) -> None:
        """Fail loudly when the architecture parameters blow up (checked once per epoch, one device read)."""
        largest = float(torch.stack([a.detach().abs().max() for a in self.alphas]).max())
        if not math.isfinite(largest) or largest > self.ALPHA_LIMIT:
            raise DivergenceError(
                f"{self.name}'s architecture parameters blew up in epoch {epoch}: max |alpha| = {largest:.3g} (a "
                f"softmax saturated past e^-{self.ALPHA_LIMIT:.0f}, so the distribution no longer learns). Lower "
                f"method.params.arch_lr (now {self.hp.arch_lr}); the run's last checkpoint is kept.")

    def score(self, archs: list[Arch]) -> list[float]:
        self.extra_scores = {"alpha_log_likelihood": [alpha_log_likelihood(self.alphas, self.path_of(a))
                                                      for a in archs]}
        return super().score(archs)

    def derive(self) -> Arch:
        if self.ctx.arch_pool is not None:
            return self.ranked(1)[0][0]
        return self.ctx.space.derive_from_weights(self.arch_probs())

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """The discretised arch (the paper's rule) first, then up to n - 1 more distinct archs drawn from the
        architecture distribution (the Gumbel-max trick on alpha, discretised by the space's own rule, so input
        constraints hold), by their log-likelihood under softmax(alpha).

        With a ground truth covering a subset of the space (`arch_pool`), the n covered archs most likely under
        the distribution instead (the discretised arch is usually not covered): an adaptation to subset truths."""
        likelihood = lambda a: alpha_log_likelihood(self.alphas, self.path_of(a))  # noqa: E731
        if self.ctx.arch_pool is not None:
            return sorted(((tuple(a), likelihood(a)) for a in self.ctx.arch_pool), key=lambda t: -t[1])[:n]
        best = self.ctx.space.derive_from_weights(self.arch_probs())
        gen = torch.Generator().manual_seed(self.ctx.seed)  # a fixed draw: the same ranking on every call

        def draw() -> Arch:
            noisy = [a.detach().cpu() - torch.log(-torch.log(torch.rand(a.shape, generator=gen).clamp_min(1e-20)))
                     for a in self.alphas]
            return self.ctx.space.derive_from_weights([F.softmax(z, -1) for z in noisy])

        others = [a for a in distinct_archs(draw, n, max_draws=10 * n) if a != best][:max(0, n - 1)]
        return [(best, likelihood(best))] + sorted(((a, likelihood(a)) for a in others), key=lambda t: -t[1])

    def artifacts(self) -> dict[str, Any]:
        """Kept beside the run record: the final architecture distribution, one row per choice point."""
        return {"arch_probs": {"choice_points": [cp.name for cp in self.supernet.choice_points],
                               "probs": [p.tolist() for p in self.arch_probs()]}}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alphas": [a.detach().cpu().clone() for a in self.alphas],
                "a_optimizer": self.a_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for a, saved in zip(self.alphas, state["alphas"], strict=True):
                a.copy_(saved)
        self.a_optimizer.load_state_dict(state["a_optimizer"])


@dataclass
class DARTSHparams:
    order: int = 2  # 1: first-order approximation (xi = 0); 2: unrolled second-order gradient (the paper's best)
    arch_lr: float = 3e-4  # Adam learning rate of the alphas (paper: 3e-4)
    arch_beta1: float = 0.5  # Adam betas (paper: (0.5, 0.999))
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3  # L2 on the alphas (paper: 1e-3)
    alpha_init_std: float = 1e-3  # alphas start at alpha_init_std * N(0, 1) (paper: 1e-3)
    xi: Optional[float] = None  # virtual step size of order 2; null = the current weight learning rate (paper)
    fd_scale: float = 0.01  # finite-difference step eps = fd_scale / ||grad_w' L_val|| (paper, Eq. 8: 0.01)
    unrolled_momentum_wd: bool = False  # include the SGD momentum buffer and weight decay in w' (official code)
    bn_affine: bool = False  # scale/shift in the mixed ops' BNs (quark0/darts' search model: affine=False)
    bn_after_pooling: bool = True  # a non-affine BN after each pooling op in the mixed op (quark0/darts' MixedOp)

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ConfigError(f"method.params.order must be 1 or 2, got {self.order}.")
        if self.fd_scale <= 0:
            raise ConfigError(f"method.params.fd_scale must be > 0, got {self.fd_scale}.")
        if self.arch_lr <= 0:
            raise ConfigError(f"method.params.arch_lr must be > 0, got {self.arch_lr}.")
        if self.xi is not None and self.xi < 0:
            raise ConfigError(f"method.params.xi must be >= 0 or null, got {self.xi}.")


@register_method("darts")
class DARTS(ArchDistributionMethod):
    Hparams = DARTSHparams

    def build(self) -> None:
        super().build()
        self.alphas = init_alphas(self.supernet, self.hp.alpha_init_std, self.generator, self.ctx.device)
        if self.hp.bn_after_pooling:
            data = self.ctx.data
            x = torch.zeros(2, data.in_channels, data.resolution, data.resolution, device=self.ctx.device)
            add_bn_after_pooling(self.supernet, x.contiguous(memory_format=torch.channels_last),
                                 self.mixed_path(detach=True))
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=self.hp.arch_lr,
                                            betas=(self.hp.arch_beta1, self.hp.arch_beta2),
                                            weight_decay=self.hp.arch_weight_decay)

    # ---- the mixed supernet ------------------------------------------------------------------------------------------
    def mixed_path(self, alphas: Optional[Sequence[torch.Tensor]] = None, detach: bool = False) -> Path:
        """Every choice point runs all candidates weighted by softmax(alpha) (a DARTS MixedOp)."""
        path = []
        for w in alpha_probs(self.alphas if alphas is None else alphas):
            path.append(WeightedChoice(tuple(range(w.numel())), w.detach() if detach else w))
        return path

    def mixed_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.supernet(x, self.mixed_path()), y)

    def _weights(self) -> list[nn.Parameter]:
        return [p for p in self.weight_parameters() if p.requires_grad]

    def xi(self) -> float:
        return self.w_scheduler.get_last_lr()[0] if self.hp.xi is None else self.hp.xi

    # ---- architecture gradient ---------------------------------------------------------------------------------------
    def arch_gradient(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                      y_val: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(d L_val / d alpha for the configured order, the detached validation loss on the device). Leaves the
        weights as they were (BatchNorm running statistics aside) and sets no .grad anywhere. No host sync: a
        non-finite loss is caught by the epoch's EpochMeans."""
        self.supernet.train()
        if self.hp.order == 1:
            loss = self.mixed_loss(x_val, y_val)
            return list(torch.autograd.grad(loss, self.alphas)), loss.detach()
        return self._unrolled_gradient(x_train, y_train, x_val, y_val)

    def _unrolled_gradient(self, x_train, y_train, x_val, y_val) -> tuple[list[torch.Tensor], torch.Tensor]:
        weights, xi = self._weights(), self.xi()
        backup = [w.detach().clone() for w in weights]
        # virtual step w' = w - xi * grad_w L_train(w, alpha)   (Eq. 6)
        loss = self.mixed_loss(x_train, y_train)
        grads = _grads_or_zeros(loss, weights)
        with torch.no_grad():
            for w, g in zip(weights, grads, strict=True):
                step = g
                if self.hp.unrolled_momentum_wd:
                    step = self._optimizer_step_direction(w, g)
                w.sub_(xi * step)
        try:
            # grad_alpha L_val(w', alpha) and v = grad_w' L_val(w', alpha)
            val_loss = self.mixed_loss(x_val, y_val)
            both = _grads_or_zeros(val_loss, [*self.alphas, *weights])
            dalpha, v = both[:len(self.alphas)], both[len(self.alphas):]
        finally:
            with torch.no_grad():
                for w, b in zip(weights, backup, strict=True):
                    w.copy_(b)
        hvp = self.hessian_vector_product(v, x_train, y_train, backup)
        return [da - xi * h for da, h in zip(dalpha, hvp, strict=True)], val_loss.detach()

    def _optimizer_step_direction(self, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Official DARTS: w' = w - xi * (momentum * buffer + grad + weight_decay * w)."""
        group = self.w_optimizer.param_groups[0]
        step = g + group["weight_decay"] * w
        buf = self.w_optimizer.state.get(w, {}).get("momentum_buffer")
        if buf is not None:
            step = step + group["momentum"] * buf
        return step

    def hessian_vector_product(self, v: Sequence[torch.Tensor], x_train: torch.Tensor, y_train: torch.Tensor,
                               origin: Optional[Sequence[torch.Tensor]] = None) -> list[torch.Tensor]:
        """Central finite difference of grad_alpha L_train(w, alpha) along v (Eq. 8): approximates
        (d^2 L_train / d alpha d w) v with eps = fd_scale / ||v||, evaluated at the weights `origin` (default:
        the current ones), which are restored exactly afterwards. A zero or non-finite v gives zeros; decided on the
        device (no host sync)."""
        weights = self._weights()
        origin = [w.detach().clone() for w in weights] if origin is None else origin
        norm = torch.sqrt(sum((t.detach().double() ** 2).sum() for t in v))
        usable = torch.isfinite(norm) & (norm > 0)
        eps = torch.where(usable, self.hp.fd_scale / norm, torch.ones_like(norm)).float()
        v = [torch.where(usable, d, torch.zeros_like(d)) for d in v]  # an unusable v moves no weight
        sides = []
        try:
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, o, d in zip(weights, origin, v, strict=True):
                        w.copy_(o + sign * eps * d)
                sides.append(_grads_or_zeros(self.mixed_loss(x_train, y_train), self.alphas))
        finally:
            with torch.no_grad():
                for w, o in zip(weights, origin, strict=True):
                    w.copy_(o)
        return [torch.where(usable, (p - n) / (2 * eps), torch.zeros_like(p)) for p, n in zip(*sides, strict=True)]

    def arch_step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                  y_val: torch.Tensor) -> torch.Tensor:
        """One Adam step of the alphas; the weights are unchanged. Returns the detached validation loss."""
        grads, val_loss = self.arch_gradient(x_train, y_train, x_val, y_val)
        self.a_optimizer.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads, strict=True):
            a.grad = g.detach()
        self.a_optimizer.step()
        return val_loss

    # ---- lifecycle ---------------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        b = self.ctx.budget
        val = self.ctx.data.infinite_batches("val", b.batch_size, self.generator, augment=self.ctx.data.augment)
        steps = EpochMeans()
        for x, y in self.train_batches():
            x_val, y_val = next(val)
            steps.add("arch_val_loss", self.arch_step(x, y, x_val, y_val), "darts architecture step")
            steps.add("train_loss", self.weight_step(self.mixed_path(detach=True), x, y), self.training_where)
        means = steps.means()
        self.check_alphas(epoch)
        return {"train_loss": means["train_loss"], "arch_val_loss": means["arch_val_loss"],
                "lr": self.w_scheduler.get_last_lr()[0], "alpha_entropy": alpha_entropy(self.alphas)}


def _grads_or_zeros(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]
