"""SMASH: One-Shot Model Architecture Search through HyperNetworks (Brock, Lim, Ritchie & Weston, ICLR 2018).

A hypernetwork maps an encoding of the architecture to the weights of the network; it is trained end to end on a
new uniformly sampled arch every step (task loss backpropagated through the generated weights), and archs are
ranked by their val accuracy with generated weights (the "SMASH score"); search = rank `budget.candidates`
random archs, keep the best.

Encoding: the concatenation of one-hot vectors of the arch's decisions (`space.decisions`), a generic stand-in
for SMASH's architecture tensor c.

Memory-bank view and how it maps here. In SMASH (ajbrock/SMASH) the network is a set of memory banks; each layer
reads some banks through a 1x1 conv, applies its op and writes to banks. The hypernet is a DenseNet of
weight-normalised 3x3 convs (LeakyReLU 0.02) over a tensor laid out along "position in the network": its input is
c (at each position, channels coding that layer's read/write banks and op hyperparameters) concatenated with a
fixed random z ~ N(0, I) per position, and the weights of the layer at a position are read from the output at that
position; a layer with fewer units slices the generated tensor (dynamic weight slicing). Here:
- a *position* is a parameter slot of the standalone net, its qualified parameter name (`cells.3.edges.2<-0.op.1.
  weight`); every slot gets a fixed random code z_slot ~ N(0, I) (`z_dim`), drawn from a seed derived from the
  name, so it is the same in every arch, run and process (SMASH's z);
- the hypernet H (`methods._hypernet.ChunkDecoder`, an MLP, i.e. a 1x1-conv hypernet over positions) generates
  each slot's values as consecutive chunks, chunk j from [c, z_slot] and a code of j;
- dynamic weight slicing: the slot key is the name without the shape, so ops of different widths at the same place
  (MBv2 blocks of expansion 3 vs 6 on the expand conv) read a prefix of one value stream, i.e. the first
  output channels of the wider op's weights, as SMASH's `weight[:n_out]`.
Simplified: (1) c is one global encoding fed to every position, not SMASH's per-position conditioning, so H must
learn which decisions matter at a slot; (2) H is per-position (1x1), SMASH's 3x3 convs also mix neighbouring
positions; (3) every parameter is generated (stem, BN, classifier included), whereas SMASH generates only the 1x1
read convs and learns the main convs (shared per block, sliced to kernel size/width), stem, BN and classifier
directly; (4) kernel-size changes at one place (a 1x1 vs a 3x3 conv on one edge) share a value stream by flat prefix,
not SMASH's centre slice; (5) no SMASH-specific sampling of bank sizes/budgets: archs come from the space's
uniform sampler like every method. Generated conv/linear weights get SMASH's whole-tensor weight normalisation
(wn2d; rescaled, see `_hypernet`), BN uses batch statistics in training and scoring.

Optimiser: SMASH's, Adam lr 1e-3, betas (0.5, 0.999), eps 1e-4, no weight decay on the hypernet, cosine-annealed
to 0 over the search; gradient clipping at budget.grad_clip.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from oneshot_bench.errors import ConfigError

from ._hypernet import ChunkDecoder, HypernetHparams, HypernetMethod, StandalonePlan, shape_params
from .base import register_method


@dataclass
class SMASHHparams(HypernetHparams):
    adam_beta1: float = 0.5  # SMASH: betas (0.5, 0.999)
    adam_eps: float = 1e-4  # SMASH: eps 1e-4
    decoder_hidden: int = 128
    decoder_layers: int = 3
    z_dim: int = 16  # size of the fixed random code of each parameter slot (SMASH's z)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.z_dim < 0:
            raise ConfigError(f"method.params.z_dim must be >= 0, got {self.z_dim}.")


def slot_code(name: str, dim: int) -> torch.Tensor:
    """Fixed N(0, I) code of a parameter slot, the same in every process (seeded from a hash of the name)."""
    seed = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") & (2**63 - 1)
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


@register_method("smash")
class SMASH(HypernetMethod):
    Hparams = SMASHHparams

    def make_hypernet(self) -> ChunkDecoder:
        self.encoding_dim = sum(len(d.choices) for d in self.ctx.space.decisions)
        self._codes: dict[str, torch.Tensor] = {}
        hp = self.hp
        return ChunkDecoder(self.encoding_dim + hp.z_dim, hp.decoder_hidden, hp.chunk_size, hp.pos_dim,
                            hp.decoder_layers, hp.code_radix)

    def encode_arch(self, arch) -> torch.Tensor:
        """Concatenated one-hots of the decisions."""
        parts = []
        for choice, d in zip(arch, self.ctx.space.decisions, strict=True):
            one_hot = torch.zeros(len(d.choices))
            one_hot[choice] = 1.0
            parts.append(one_hot)
        return torch.cat(parts)

    def _code(self, name: str) -> torch.Tensor:
        if name not in self._codes:
            self._codes[name] = slot_code(name, self.hp.z_dim)
        return self._codes[name]

    def extend_plan(self, plan: StandalonePlan) -> None:
        rows = len(plan.params)
        z = (torch.stack([self._code(s.name) for s in plan.params]) if rows and self.hp.z_dim
             else torch.zeros(rows, self.hp.z_dim))
        cond = torch.cat([self.encode_arch(plan.arch).expand(rows, -1), z], dim=1)
        plan.extra.update(cond=cond.to(self.ctx.device),
                          layout=self.hypernet.layout([s.numel for s in plan.params], self.ctx.device))

    def generate(self, plan: StandalonePlan) -> dict[str, torch.Tensor]:
        flat = self.hypernet(plan.extra["cond"], plan.extra["layout"])
        return shape_params(flat, plan.params, self.hp.weight_norm)
