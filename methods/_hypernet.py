"""Machinery shared by the hypernetwork methods (GHN, SMASH); not a method itself (the registry skips `_` modules).

A hypernetwork method never owns the weights of a network. For an arch it builds the standalone network of the
space on the meta device (structure only, no storage), lets its hypernetwork generate a tensor for every parameter
of that network, and runs `torch.func.functional_call(net, (generated, buffers), x)`: the logits are exactly those
of `space.build_standalone(arch, net)` loaded with the generated weights, and the task loss backpropagates through
the generated weights into the hypernetwork parameters phi (the only trained parameters).

Generation (`ChunkDecoder`): a shared MLP maps a conditioning vector (GHN: a node embedding; SMASH: the arch
encoding with a parameter slot's code) plus a code of the chunk index j (sinusoidal + learned) to a fixed-size
chunk of `chunk_size` values; a row (one graph node or one parameter slot) that needs n values is covered by chunks
j = 0..ceil(n/chunk)-1, cut to n and split/reshaped into its parameter shapes (`shape_params`). Every value is
generated (nothing tiled or repeated, unlike GHN-2's max-shape tiling), and one H serves all shapes.

Parameterisation of the generated values (`shape_params`): with `weight_norm` (default) every conv weight is
divided by its whole-tensor norm, as SMASH's "simple weight norm" (wn2d) does to its generated (conv) weights, and
scaled by sqrt(out_channels) so that filters have unit norm on average (a variance-preserving scale; SMASH's
plain wn2d would shrink wide layers). Linear (classifier) weights stay raw: normalising them bounds the logits
and stalls the loss. Normalisation-layer scales are 1 + generated value, biases the generated value. Without
`weight_norm` conv weights are raw too (GHN-1 applies no normalisation; GHN-2 adds an operator-dependent one).

BatchNorm: the standalone nets' BN layers run in training mode (batch statistics) both when training phi and
when scoring, as in the hypernetwork papers (ppuda's GHN sets `bn_train=True` for evaluation): running statistics
of a network whose weights were just generated do not exist. Scoring uses the same fixed val batches for every
arch, so batch-statistic scores are deterministic.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from oneshot_bench.config import Choice, NetConfig
from oneshot_bench.errors import ConfigError
from oneshot_bench.exits import accuracies as exit_accuracies
from oneshot_bench.exits import correct_per_exit, ranking_value, task_loss
from oneshot_bench.training import EpochMeans, accuracy, cosine, optimizer_step, steps_per_epoch
from search_spaces.base import ENCODE, SAMPLE, STANDALONE, Arch, SearchSpace

from .base import Method, rank

_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ParamSpec:
    name: str  # qualified parameter name in the standalone net
    shape: tuple[int, ...]
    kind: str  # "conv_weight" (ndim >= 3), "weight" (other ndim >= 2: linear), "norm_weight" (scale of a
    # normalisation layer), "bias" (other 1-D)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class StandalonePlan:
    """What a hypernetwork needs to run one arch: its standalone net on the meta device, the specs of the
    parameters to generate, real BN buffers on the device, and method-specific tensors in `extra`."""

    arch: Arch
    net: nn.Module
    params: list[ParamSpec]
    buffers: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


def standalone_plan(space: SearchSpace, arch: Arch, net_cfg: NetConfig, device: torch.device) -> StandalonePlan:
    with torch.device("meta"):  # structure only: every parameter is generated, so none is allocated here
        net = space.build_standalone(arch, net_cfg)
    net.train()  # batch-statistic BN (module docstring)
    modules = dict(net.named_modules())
    specs = []
    for name, p in net.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if p.dim() >= 3:
            kind = "conv_weight"
        elif p.dim() == 2:
            kind = "weight"
        elif leaf == "weight" and isinstance(modules[owner], _NORM_LAYERS):
            kind = "norm_weight"
        else:
            kind = "bias"
        specs.append(ParamSpec(name, tuple(p.shape), kind))
    buffers = {name: (torch.ones if name.endswith("running_var") else torch.zeros)(b.shape, dtype=b.dtype,
                                                                                    device=device)
               for name, b in net.named_buffers()}
    return StandalonePlan(tuple(arch), net, specs, buffers)


def owning_module(name: str, modules: Collection[str]) -> str | None:
    """The longest proper prefix of the parameter name `name` that is in `modules` (the graph node's module that
    owns the parameter), or None."""
    prefix = name
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        if prefix in modules:
            return prefix
    return None


def shape_params(flat: torch.Tensor, specs: Sequence[ParamSpec], weight_norm: bool) -> dict[str, torch.Tensor]:
    """Split generated values (`specs` in order, `flat` of their total size) into named parameter tensors, in fp32
    as a standalone net's parameters are: under bf16 autocast the decoder emits bf16, and BatchNorm takes fp32
    scale and shift beside its fp32 running statistics (autocast casts conv and linear weights itself)."""
    flat = flat.float()
    total = sum(s.numel for s in specs)
    if flat.numel() != total:
        raise ValueError(f"{flat.numel()} generated values for {total} parameters")
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for s in specs:
        v = flat[offset:offset + s.numel]
        offset += s.numel
        if s.kind == "conv_weight" and weight_norm:
            v = v * (math.sqrt(s.shape[0]) / (v.norm() + 1e-6))
        elif s.kind == "norm_weight":
            v = 1.0 + v
        out[s.name] = v.view(s.shape)
    return out


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal code of integer positions: (n,) -> (n, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


@dataclass
class ChunkLayout:
    """Index tensors for decoding rows that need `counts[r]` values each (cached per arch)."""

    counts: tuple[int, ...]
    row: torch.Tensor  # (chunks,) row of each chunk
    pos_code: torch.Tensor  # (chunks, pos_dim) sinusoidal code of each chunk's index within its row
    keep: torch.Tensor  # indices into the flattened (chunks * chunk_size) output that are kept, in row order
    pos_low: torch.Tensor  # (chunks,) j mod radix: the low digit of each chunk's index j within its row
    pos_high: torch.Tensor  # (chunks,) j div radix: its high digit


class ChunkDecoder(nn.Module):
    """The shared hypernetwork H: (conditioning vector of a row, chunk index j) -> `chunk_size` values.

    h = act(A cond + B sinusoid(j) + E(j) + b), then `layers - 1` hidden layers, then a linear map to the chunk;
    LeakyReLU(0.02) as in SMASH's hypernet. E(j) is a learned code of the chunk index: with the sinusoid alone the
    chunks of one row are too alike to fit even one fixed arch well (measured: 22% vs 72% val accuracy after 120
    steps on digits, a 4-node cell space at C=8). E is two-digit in base `code_radix` (R):
    E(j) = E_low[j mod R] + E_high[j div R], so every index below R^2 has its own learned code (R=1024: rows up to
    about a million chunks, 67M values at chunk size 64) for 2R table rows, and a row that needs more is refused
    when its layout is built, never silently given the sinusoid alone. (A single table of R rows, as before, left
    about 56% of the values of a paper-width chain space's widest row with the sinusoid only.) `code_radix=0` is
    the ablation without any learned code. The parameter count does not depend on the target net.
    """

    def __init__(self, cond_dim: int, hidden: int, chunk_size: int, pos_dim: int = 16, layers: int = 2,
                 code_radix: int = 0) -> None:
        super().__init__()
        if chunk_size < 1 or hidden < 1 or layers < 1 or pos_dim < 2 or pos_dim % 2:
            raise ConfigError(f"decoder needs chunk_size, hidden, layers >= 1 and an even pos_dim >= 2; got "
                              f"chunk_size={chunk_size}, hidden={hidden}, layers={layers}, pos_dim={pos_dim}.")
        self.chunk_size, self.pos_dim, self.code_radix = chunk_size, pos_dim, code_radix
        self.cond = nn.Linear(cond_dim, hidden)
        self.pos = nn.Linear(pos_dim, hidden, bias=False)
        self.pos_low = self.pos_high = None
        if code_radix > 0:
            self.pos_low, self.pos_high = nn.Embedding(code_radix, hidden), nn.Embedding(code_radix, hidden)
            for table in (self.pos_low, self.pos_high):  # the sum of the two digits' codes has unit variance
                nn.init.normal_(table.weight, std=math.sqrt(0.5))
        body: list[nn.Module] = []
        for _ in range(layers - 1):
            body += [nn.LeakyReLU(0.02), nn.Linear(hidden, hidden)]
        body += [nn.LeakyReLU(0.02), nn.Linear(hidden, chunk_size)]
        self.body = nn.Sequential(*body)

    @property
    def code_capacity(self) -> int:
        """Chunks per row that get their own learned code (0: no learned code)."""
        return self.code_radix ** 2

    def layout(self, counts: Sequence[int], device: torch.device) -> ChunkLayout:
        counts = tuple(int(c) for c in counts)
        n_chunks = [math.ceil(c / self.chunk_size) for c in counts]
        if self.code_radix > 0 and n_chunks and max(n_chunks) > self.code_capacity:
            need = max(n_chunks)
            raise ConfigError(
                f"method.params.code_radix={self.code_radix}: a generated row needs {need} chunks of "
                f"{self.chunk_size} values, beyond the {self.code_capacity} that have a learned position code; set "
                f"method.params.code_radix to at least {math.isqrt(need - 1) + 1} (or raise chunk_size).")
        row = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(n_chunks, dtype=torch.long))
        pos = torch.cat([torch.arange(n) for n in n_chunks]) if counts else torch.zeros(0, dtype=torch.long)
        starts = [0]
        for n in n_chunks[:-1]:
            starts.append(starts[-1] + n * self.chunk_size)
        keep = torch.cat([torch.arange(c) + s for c, s in zip(counts, starts, strict=True)]) if counts else pos
        radix = max(self.code_radix, 1)
        return ChunkLayout(counts, row.to(device), sinusoid(pos, self.pos_dim).to(device), keep.to(device),
                           (pos % radix).to(device), (pos // radix).to(device))

    def forward(self, cond: torch.Tensor, layout: ChunkLayout) -> torch.Tensor:
        """cond: (rows, cond_dim) -> the rows' values, concatenated: (sum(counts),)."""
        h = self.cond(cond)[layout.row] + self.pos(layout.pos_code)
        if self.pos_low is not None and self.pos_high is not None:
            h = h + self.pos_low(layout.pos_low) + self.pos_high(layout.pos_high)
        return self.body(h).reshape(-1)[layout.keep]


class Optimizer(Choice):
    adam = "adam"
    sgd = "sgd"  # with the budget's momentum, nesterov


@dataclass
class HypernetHparams:
    optimizer: Optimizer = Optimizer.adam  # adam | sgd (sgd uses the budget's momentum, nesterov)
    lr: float = 1e-3  # on the hypernetwork parameters phi, cosine-annealed to 0 over the search
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_eps: float = 1e-8
    chunk_size: int = 64  # values per decoder output (the shared H's output size)
    decoder_hidden: int = 64
    decoder_layers: int = 2
    pos_dim: int = 64  # sinusoidal code of the chunk index
    code_radix: int = 1024  # learned chunk-index code, two digits in this base: rows up to radix^2 chunks
    # (0: the sinusoidal code only, an ablation)
    weight_norm: bool = True  # whole-tensor weight normalisation of generated conv/linear weights (see above)
    plan_cache: int = 64  # archs whose meta net / graph tensors are kept (LRU); 0 disables

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"method.params.lr must be > 0, got {self.lr}.")
        if self.weight_decay < 0 or self.plan_cache < 0 or self.code_radix < 0:
            raise ConfigError(f"method.params.weight_decay, plan_cache and code_radix must be >= 0, got "
                              f"{self.weight_decay}, {self.plan_cache} and {self.code_radix}.")
        if (self.chunk_size < 1 or self.decoder_hidden < 1 or self.decoder_layers < 1 or self.pos_dim < 2
                or self.pos_dim % 2):
            raise ConfigError(f"method.params: chunk_size, decoder_hidden and decoder_layers must be >= 1 and "
                              f"pos_dim even and >= 2; got chunk_size={self.chunk_size}, decoder_hidden="
                              f"{self.decoder_hidden}, decoder_layers={self.decoder_layers}, pos_dim={self.pos_dim}.")


class HypernetMethod(Method):
    """Trains a hypernetwork on uniformly sampled archs; scores an arch by its val accuracy with generated weights;
    derives by scoring `budget.candidates` random archs and keeping the best."""

    required_capabilities = frozenset({SAMPLE, ENCODE, STANDALONE})
    Hparams = HypernetHparams

    # ---- subclass hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def make_hypernet(self) -> nn.Module:
        """The module holding phi (everything the optimizer trains)."""

    @abstractmethod
    def extend_plan(self, plan: StandalonePlan) -> None:
        """Add the method's per-arch tensors (graph, encodings, chunk layout) to plan.extra."""

    @abstractmethod
    def generate(self, plan: StandalonePlan) -> dict[str, torch.Tensor]:
        """Generated parameters of `plan.net` by qualified name (all of them)."""

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        ctx, hp = self.ctx, self.hp
        self.hypernet = self.make_hypernet().to(ctx.device)
        if hp.optimizer == Optimizer.adam:
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.hypernet.parameters(), lr=hp.lr, betas=(hp.adam_beta1, 0.999), eps=hp.adam_eps,
                weight_decay=hp.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.hypernet.parameters(), lr=hp.lr, momentum=ctx.budget.momentum,
                                             nesterov=ctx.budget.momentum > 0, weight_decay=hp.weight_decay)
        self.steps_per_epoch = steps_per_epoch(len(ctx.data.train), ctx.budget.batch_size)
        self.scheduler = cosine(self.optimizer, ctx.budget.search_epochs * self.steps_per_epoch)
        self._plans: OrderedDict[Arch, StandalonePlan] = OrderedDict()
        self.derive_scores: list[tuple[Arch, float]] = []

    def plan(self, arch: Arch) -> StandalonePlan:
        arch = tuple(arch)
        plan = self._plans.get(arch)
        if plan is None:
            plan = standalone_plan(self.ctx.space, arch, self.ctx.net, self.ctx.device)
            self.extend_plan(plan)
            if self.hp.plan_cache > 0:
                self._plans[arch] = plan
                while len(self._plans) > self.hp.plan_cache:
                    self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(arch)
        return plan

    def run(self, plan: StandalonePlan, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits of the standalone net of `plan` with `params` (generated) and the plan's BN buffers."""
        return functional_call(plan.net, (params, plan.buffers), (x,), strict=True)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        b = self.ctx.budget
        self.hypernet.train()
        steps = EpochMeans()
        for x, y in self.ctx.data.batches("train", b.batch_size, self.generator, max_batches=self.steps_per_epoch):
            plan = self.plan(self.ctx.space.sample(self.rng))  # a new uniformly sampled arch every step
            loss = task_loss(plan.net, self.run(plan, self.generate(plan), x), y)  # every classifier's, if several
            steps.add("train_loss", optimizer_step(loss, self.optimizer, self.hypernet, b.grad_clip, self.scheduler),
                      f"{self.name} hypernetwork training")
        return {**steps.means(), "lr": self.scheduler.get_last_lr()[0]}

    @torch.no_grad()
    def generated_accuracy(self, arch: Arch) -> float:
        """Val accuracy (percent) of `arch` with generated weights, on the same fixed val batches for every arch
        (budget.score_batches batches, no shuffling, no augmentation), BN on batch statistics. In a multi-exit
        space, the anytime AUC of its classifiers' generated-weight accuracies (GHN's anytime search)."""
        ctx, b = self.ctx, self.ctx.budget
        self.hypernet.eval()
        plan = self.plan(arch)
        params = self.generate(plan)
        batches = ctx.data.batches("val", b.batch_size, self.generator, shuffle=False, augment=False,
                                   max_batches=b.score_batches)
        if ctx.space.multi_exit:
            per_exit = exit_accuracies(correct_per_exit(plan.net, lambda x: self.run(plan, params, x), batches))
            acc = ranking_value(ctx.space, arch, ctx.net, ctx.data.resolution, {"val_exit_acc": per_exit}, "val")
        else:
            acc = accuracy(lambda x: self.run(plan, params, x), batches)
        self.hypernet.train()
        return acc

    def score(self, archs: list[Arch]) -> list[float]:
        return [self.generated_accuracy(a) for a in archs]

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """The papers' search: n uniformly sampled archs ranked by generated-weight validation accuracy."""
        self.derive_scores = rank(self.candidate_archs(n), self.cached("derive", self.generated_accuracy),
                                  f"{self.name} search")
        return self.derive_scores

    def artifacts(self) -> dict[str, Any]:
        space = self.ctx.space
        return {"derive_candidates": [{"arch": space.encode(a), "score": s} for a, s in self.derive_scores]}

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "hypernet": self.hypernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.hypernet.load_state_dict(state["hypernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
