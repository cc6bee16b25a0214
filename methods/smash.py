"""SMASH: One-Shot Model Architecture Search through HyperNetworks (Brock, Lim, Ritchie & Weston, ICLR 2018),
adapted to this harness' spaces (the report labels its rows as this adaptation).

A hypernetwork maps an encoding of the architecture to weights of the network; it is trained end to end on a new
uniformly sampled arch every step (task loss backpropagated through the generated weights, and into the weights
learned directly), and archs are ranked by their val accuracy with generated weights (the "SMASH score"); search =
rank `budget.candidates` random archs, keep the best.

What SMASH generates (`generate`). In SMASH (ajbrock/SMASH) the network is a set of memory banks; each layer reads
some banks through a 1x1 conv, applies its op and writes to banks. The hypernet generates only the 1x1 read convs;
the main convs, the stem, the BNs and the classifier are ordinary weights learned directly. Here, with
`generate: pointwise` (default), every 1x1 conv weight of the standalone net (pointwise convs of separable and
MBv2 blocks, 1x1 convs, projections) is generated and every other parameter is learned directly, one tensor per
(parameter slot, shape), shared by every arch that has that slot. `generate: all` generates every parameter (the
ablation: a generic hypernetwork).

Per-position conditioning. SMASH's architecture tensor c holds, at each position of the network, the codes of
that position's own layer (its read/write banks and op). Here a *position* is a parameter slot of the standalone
net (its qualified parameter name); its conditioning is the concatenated one-hot encoding of the arch's decisions
MASKED to the decisions that shape the slot's module (as the space declares them: `ArchGraph.node_decisions`, its
edge's op and input, its layer's op; NB101 declares every decision of the cell, whose widths depend on the whole
cell graph), concatenated with a fixed random code z_slot ~ N(0, I) (`z_dim`, seeded from the name: the same in
every arch, run and process; SMASH's z). So changing one decision changes only the generated weights of the slots
it shapes.

The hypernet H (`methods._hypernet.ChunkDecoder`, an MLP, i.e. a 1x1-conv hypernet over positions) generates each
slot's values as consecutive chunks, chunk j from [c_slot, z_slot] and a code of j. Dynamic weight slicing: the
slot key is the name without the shape, so generated weights of different widths at one place (MBv2 expansion 3
vs 6) read a prefix of one value stream, as SMASH's `weight[:n_out]`.

Departures from ajbrock/SMASH: (1) H is per-position (1x1); SMASH's hypernet is a DenseNet of 3x3 convs that also
mixes neighbouring positions; (2) directly learned weights are one tensor per (slot, shape), not SMASH's main convs
shared per block and sliced to kernel size and width; (3) kernel-size changes of generated weights share a stream by
flat prefix, not a centre slice (pointwise weights are all 1x1, so this only matters with `generate: all`); (4) no
SMASH-specific sampling of bank sizes/budgets: archs come from the space's uniform sampler like every method.
Generated conv weights get SMASH's whole-tensor weight normalisation (wn2d; rescaled, see `_hypernet`), BN uses
batch statistics in training and scoring.

Optimiser: SMASH's, Adam lr 1e-3, betas (0.5, 0.999), eps 1e-4, no weight decay, on the hypernet and the directly
learned weights, cosine-annealed to 0 over the search; gradient clipping at budget.grad_clip.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from oneshot_bench.config import Choice
from oneshot_bench.errors import ConfigError
from search_spaces.base import TO_GRAPH

from ._hypernet import (
    ChunkDecoder,
    HypernetHparams,
    HypernetMethod,
    ParamSpec,
    StandalonePlan,
    owning_module,
    shape_params,
)
from .base import register_method


class Generate(Choice):
    pointwise = "pointwise"  # SMASH: the 1x1 conv weights are generated, the rest learned directly
    all = "all"  # every parameter generated (ablation)


@dataclass
class SMASHHparams(HypernetHparams):
    adam_beta1: float = 0.5  # SMASH: betas (0.5, 0.999)
    adam_eps: float = 1e-4  # SMASH: eps 1e-4
    decoder_hidden: int = 128
    decoder_layers: int = 3
    z_dim: int = 16  # size of the fixed random code of each parameter slot (SMASH's z)
    generate: Generate = Generate.pointwise  # pointwise (SMASH) | all (ablation)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.z_dim < 0:
            raise ConfigError(f"method.params.z_dim must be >= 0, got {self.z_dim}.")


def slot_code(name: str, dim: int) -> torch.Tensor:
    """Fixed N(0, I) code of a parameter slot, the same in every process (seeded from a hash of the name)."""
    seed = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") & (2**63 - 1)
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


def is_pointwise(spec: ParamSpec) -> bool:
    """A 1x1 conv weight (SMASH generates these)."""
    return spec.kind == "conv_weight" and all(k == 1 for k in spec.shape[2:])


def learned_key(spec: ParamSpec) -> str:
    """ParameterDict key of a directly learned slot: its name and shape (no dots, which torch forbids)."""
    return spec.name.replace(".", "/") + "@" + "x".join(map(str, spec.shape))


def init_learned(spec: ParamSpec, seed: int) -> torch.Tensor:
    """PyTorch's default initialisation of the parameter's layer (conv/linear: Kaiming uniform, a = sqrt(5)); norm
    scales 1, biases 0. Drawn from a generator seeded by the run's seed and the slot, never the global stream: a
    slot first met while scoring gets the same values as when first met in training, and training's random
    stream is untouched."""
    if spec.kind == "norm_weight":
        return torch.ones(spec.shape)
    if spec.kind == "bias":
        return torch.zeros(spec.shape)
    key = f"{seed}|{learned_key(spec)}".encode()
    generator = torch.Generator().manual_seed(
        int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1))
    fan_in = math.prod(spec.shape[1:])
    bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0  # kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), +)
    return (torch.rand(spec.shape, generator=generator) * 2.0 - 1.0) * bound


class SMASHHypernet(nn.Module):
    """phi: the decoder H, and the directly learned weights (grown as new slots appear; see `SMASH.learned_for`)."""

    def __init__(self, decoder: ChunkDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.learned = nn.ParameterDict()


@register_method("smash")
class SMASH(HypernetMethod):
    Hparams = SMASHHparams
    required_capabilities = HypernetMethod.required_capabilities | {TO_GRAPH}
    adaptation = "this harness's adaptation of SMASH to the space"

    def make_hypernet(self) -> SMASHHypernet:
        self.encoding_dim = sum(len(d.choices) for d in self.ctx.space.decisions)
        offsets = [0]
        for d in self.ctx.space.decisions:
            offsets.append(offsets[-1] + len(d.choices))
        self.decision_offsets = offsets
        self._codes: dict[str, torch.Tensor] = {}
        self.learned_slots: list[ParamSpec] = []  # in creation order (the optimizer's and checkpoints' order)
        hp = self.hp
        return SMASHHypernet(ChunkDecoder(self.encoding_dim + hp.z_dim, hp.decoder_hidden, hp.chunk_size,
                                          hp.pos_dim, hp.decoder_layers, hp.code_radix))

    def encode_arch(self, arch) -> torch.Tensor:
        """Concatenated one-hots of the decisions."""
        parts = []
        for choice, d in zip(arch, self.ctx.space.decisions, strict=True):
            one_hot = torch.zeros(len(d.choices))
            one_hot[choice] = 1.0
            parts.append(one_hot)
        return torch.cat(parts)

    def decision_mask(self, decisions) -> torch.Tensor:
        """1 on the encoding entries of `decisions`, 0 elsewhere."""
        mask = torch.zeros(self.encoding_dim)
        for d in decisions:
            mask[self.decision_offsets[d]:self.decision_offsets[d + 1]] = 1.0
        return mask

    def _code(self, name: str) -> torch.Tensor:
        if name not in self._codes:
            self._codes[name] = slot_code(name, self.hp.z_dim)
        return self._codes[name]

    def slot_decisions(self, plan: StandalonePlan) -> dict[str, tuple[int, ...]]:
        """Each parameter's shaping decisions: those of the graph node that owns its module (longest prefix)."""
        graph = self.ctx.space.to_graph(plan.arch, self.ctx.net)
        if not graph.node_decisions:
            raise ConfigError(f"space {self.ctx.space.name!r}: to_graph declares no node_decisions, so SMASH cannot "
                              f"condition each weight on the decisions that shape it.")
        owner = {m: tuple(d) for m, d in zip(graph.node_modules, graph.node_decisions, strict=True) if m is not None}
        return {spec.name: owner.get(owning_module(spec.name, owner), ()) for spec in plan.params}

    def learned_for(self, spec: ParamSpec) -> nn.Parameter:
        """The directly learned tensor of a slot, created on first use and handed to the optimizer."""
        key = learned_key(spec)
        if key not in self.hypernet.learned:
            param = nn.Parameter(init_learned(spec, self.ctx.seed).to(self.ctx.device))
            self.hypernet.learned[key] = param
            self.optimizer.param_groups[0]["params"].append(param)
            self.learned_slots.append(spec)
        return self.hypernet.learned[key]

    def extend_plan(self, plan: StandalonePlan) -> None:
        generate_all = self.hp.generate == Generate.all
        generated = [s for s in plan.params if generate_all or is_pointwise(s)]
        learned = [s for s in plan.params if not (generate_all or is_pointwise(s))]
        shaping = self.slot_decisions(plan)
        encoding = self.encode_arch(plan.arch)
        rows = len(generated)
        masked = (torch.stack([encoding * self.decision_mask(shaping[s.name]) for s in generated]) if rows
                  else torch.zeros(0, self.encoding_dim))
        z = (torch.stack([self._code(s.name) for s in generated]) if rows and self.hp.z_dim
             else torch.zeros(rows, self.hp.z_dim))
        plan.extra.update(cond=torch.cat([masked, z], dim=1).to(self.ctx.device), generated=generated,
                          shaping=shaping, layout=self.hypernet.decoder.layout([s.numel for s in generated],
                                                                               self.ctx.device),
                          learned={s.name: learned_key(s) for s in learned})
        for s in learned:
            self.learned_for(s)

    def generate(self, plan: StandalonePlan) -> dict[str, torch.Tensor]:
        out = {}
        if plan.extra["generated"]:
            flat = self.hypernet.decoder(plan.extra["cond"], plan.extra["layout"])
            out = shape_params(flat, plan.extra["generated"], self.hp.weight_norm)
        for name, key in plan.extra["learned"].items():
            out[name] = self.hypernet.learned[key]
        return out

    # ---- checkpoints: the learned slots are re-created, in order, before the weights and optimizer load -------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "learned_slots": [(s.name, list(s.shape), s.kind) for s in self.learned_slots]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Exactly the saved learned slots, in their order (slots created since, e.g. while scoring part-way, are
        dropped: they are re-created with the same values when next met), then the weights and optimizer."""
        saved = [ParamSpec(name, tuple(shape), kind) for name, shape, kind in state["learned_slots"]]
        keep = {learned_key(s) for s in saved}
        for key in [k for k in self.hypernet.learned if k not in keep]:
            del self.hypernet.learned[key]
        self.learned_slots = []
        self.optimizer.param_groups[0]["params"] = list(self.hypernet.decoder.parameters())
        for spec in saved:
            key = learned_key(spec)
            if key in self.hypernet.learned:
                self.optimizer.param_groups[0]["params"].append(self.hypernet.learned[key])
                self.learned_slots.append(spec)
            else:
                self.learned_for(spec)
        self._plans.clear()  # plans name learned slots; they are rebuilt on demand
        super().load_state_dict(state)
