"""ENAS: Efficient Neural Architecture Search via Parameter Sharing (Pham et al., ICML 2018).

An LSTM controller samples architectures; the children share the supernet's weights. Each epoch alternates, as
the official code (melodyguan/enas, `controller_train_every=1`) does:

1. shared-weight training: one pass over the training split; every step samples a fresh arch from the controller
   and takes one SGD step of the shared weights on that single path (`SupernetMethod.weight_step`);
2. controller training: `controller_steps` Adam steps (lr 3.5e-4 as in the paper), each on the REINFORCE gradient
   averaged over `controller_aggregate` sampled archs (official: 30 steps x 10 aggregated samples per epoch).
   Reward = accuracy (fraction) of the child with shared weights on one freshly drawn search-val minibatch plus
   `entropy_weight` x the sample's entropy (paper: 1e-4, added to the reward, no gradient through it). Advantage =
   reward - baseline, where the baseline is an exponential moving average of past rewards (decay 0.99, the
   official `controller_bl_dec`; it starts at 0 as in the official code and is updated after each sample's
   advantage is taken). Loss = -mean(log pi(arch) * advantage).

Reward batches use BatchNorm in training mode (batch statistics), as the official `build_valid_rl` does
(`is_training=True`); running statistics are left untouched, and `scoring.bn_mode` does not apply (below).

Controller (`controller`): a one-layer LSTM (`lstm_size` 64 as in the official code) from a learned start input, one
step per decision of `space.decisions`. `official_micro` (default) is the official micro controller (melodyguan/enas
`micro_controller.py`): Adam lr 3.5e-3, op logits (1.1 / 2.5) * tanh(W h) from one op head shared by every op
decision, no temperature, and attention-based input selection where the space declares it (`Decision.selects_input`,
a DARTS cell's inputs): logits 1.1 * tanh(v^T tanh(W1 anchor_j + W2 h)) over the cell's nodes so far, the chosen
node's anchor fed as the next input (see `Controller`). `paper` is a generic controller with the paper's constants:
one head per decision, logits 2.5 * tanh(W_i h / 5.0), Adam lr 3.5e-4, the sampled choice's embedding (per decision)
as the next input. Every constant can be set (`tanh_constant`, `temperature`, `op_tanh_reduce`, `controller_lr`;
null: the controller's own). All controller parameters start uniform in [-0.1, 0.1]. Departures from the official
micro controller: the decision order is the space's (a DARTS node's input_a, op_a, input_b, op_b, the official
samples both inputs, then both ops, and lets them repeat; here the second input must exceed the first, the space's
canonical form); its fixed op-logit biases for the normal cell (`use_bias`) are not reproduced; on spaces without
input selections (edge-op cells, chains) only the shared op head and constants apply.

Ordering constraints: a space may declare that a decision's choice must exceed an earlier one's
(`Decision.greater_than`; in a DARTS cell a node's second input comes after its first). The controller masks
invalid choices before the softmax (the earlier decision may not take a choice that leaves the later one nothing,
the later one must exceed the sampled earlier one), so every sample is valid and log-probabilities are those of the
renormalised (masked) distribution; nothing is resampled. Spaces with validity rules that decisions cannot declare
would need rejection sampling; none of the supernet spaces has one.

Ranking proxy: supernet accuracy of each arch (the spine's, BN as below); `extra_scores` adds the
controller's log-probability of each arch (`controller_log_prob`). Derive: sample `budget.candidates` archs from
the trained controller (distinct ones, up to 10 rounds of sampling), keep the best by supernet accuracy. With a
ground truth that covers only a subset of the space (truth=nb301), the candidates are the `budget.candidates`
covered archs with the highest controller log-probability instead (an adaptation, so the result is a lookup).

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): the paper keeps, of several sampled archs, the one
with the highest reward on one validation minibatch ("Training ENAS and Deriving Architectures"); the official shared
child sets `is_training = True` whenever `fixed_arc is None` (micro_child.py `_model`), so every BN of it, in rewards
and in the sampled archs' scores alike, uses the batch's statistics. Here the mode applies to the ranking of the shared
sample and of the controller's samples (`ranked`), not to the reward nor the log-probability; default: the space's
(`SearchSpace.scoring_bn_mode`: batch_stats_choice on the NAS-Bench-201 space, chosen across seeds in issue 28;
recalibrate_all elsewhere), the nearest mode (the fixed BNs keep trained statistics).

Host reads per step (`host_reads_per_step`, enforced by tests/test_host_syncs.py): the controller lives on the CPU,
so `sample_archs` (its sampled decisions pick the next weight step's path) and `reinforce_step` (its statistics)
read CPU tensors, no device sync; `reward_accuracies` reads the supernet's accuracies of one controller batch from
the device in one sync per controller step, because the CPU controller's REINFORCE update needs them. Weight-step
losses stay on the device until the epoch ends.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.config import Choice
from oneshot_bench.errors import ConfigError, DivergenceError
from oneshot_bench.training import EpochMeans, batch_stat_bn
from search_spaces.base import Arch, Decision, Path

from .base import distinct_archs, rank, register_method
from .supernet import SupernetMethod


def ordering_constraints(decisions: Sequence[Decision]) -> tuple[dict[int, int], dict[int, int]]:
    """The declared `greater_than` constraints as masks need them: (later decision -> the earlier one it must
    exceed, earlier decision -> the bound its choice must stay below so that every later one keeps a choice)."""
    exceeds: dict[int, int] = {}
    below: dict[int, int] = {}
    for i, d in enumerate(decisions):
        if d.greater_than is None:
            continue
        a = d.greater_than
        if not 0 <= a < i:
            raise ValueError(f"decision {d.name} must exceed an earlier decision, not decision {a}")
        exceeds[i] = a
        below[a] = min(below.get(a, len(decisions[a].choices)), len(d.choices) - 1)
    return exceeds, below


class Controller(nn.Module):
    """ENAS' LSTM policy over a space's decisions.

    `attention=False` (the paper's controller, generic): one softmax head and one choice embedding per decision.
    `attention=True` (the official micro controller, `micro_controller.py`): one op head and op embedding shared by
    the decisions with the same choices; a decision that selects an input node (`Decision.selects_input`) scores
    the cell's nodes built so far by attention, v^T tanh(W1 anchor_j + W2 h), and feeds the chosen node's anchor
    as the next input. A cell's input nodes get anchors from LSTM steps at the cell's start (zeros as inputs to
    later steps, their W1 projections from the LSTM output), and each built node an anchor from one more LSTM step
    after its last decision, after which the input restarts from the learned start input. Op logits are
    (tanh_constant / op_tanh_reduce) * tanh(z / temperature), input logits tanh_constant * tanh(z / temperature).
    """

    def __init__(self, decisions: Sequence[Decision], lstm_size: int = 64, tanh_constant: Optional[float] = 2.5,
                 temperature: Optional[float] = 5.0, init_range: float = 0.1, op_tanh_reduce: float = 1.0,
                 attention: bool = False) -> None:
        super().__init__()
        self.decisions = list(decisions)
        self.sizes = [len(d.choices) for d in decisions]
        self.tanh_constant, self.temperature, self.op_tanh_reduce = tanh_constant, temperature, op_tanh_reduce
        self.exceeds, self.below = ordering_constraints(decisions)
        self.g_emb = nn.Parameter(torch.empty(1, lstm_size))
        self.lstm = nn.LSTMCell(lstm_size, lstm_size)
        # decision i uses heads[head_of[i]] and embeddings[head_of[i]] (None: an attention input selection)
        self.head_of: list[Optional[int]] = []
        shared: dict[tuple[str, ...], int] = {}
        sizes: list[int] = []
        for d in decisions:
            if attention and d.selects_input:
                self.head_of.append(None)
            elif attention:
                self.head_of.append(shared.setdefault(d.choices, len(sizes)))
                if len(sizes) < len(shared):
                    sizes.append(len(d.choices))
            else:
                self.head_of.append(len(sizes))
                sizes.append(len(d.choices))
        self.heads = nn.ModuleList(nn.Linear(lstm_size, n) for n in sizes)
        self.embeddings = nn.ModuleList(nn.Embedding(n, lstm_size) for n in sizes)
        # anchors of built nodes are kept only where some decision attends over them
        self.attends = attention and any(d.selects_input for d in decisions)
        if self.attends:
            self.w_attn_1 = nn.Linear(lstm_size, lstm_size, bias=False)
            self.w_attn_2 = nn.Linear(lstm_size, lstm_size, bias=False)
            self.v_attn = nn.Linear(lstm_size, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        self._collect: Optional[list[torch.Tensor]] = None  # set by `saturation` to gather pre-squash logits

    # |pre-squash logit| beyond which a head is saturated: tanh'(10) ~ 8e-9 (no gradient reaches the weights), or,
    # without tanh, a softmax past e^-100
    SATURATED = {True: 10.0, False: 100.0}

    @torch.no_grad()
    def saturation(self, archs: torch.Tensor) -> float:
        """Share of the decisions of `archs` (teacher forcing) whose pre-squash logits are saturated, 1.0 when any
        is not finite."""
        self._collect = []
        try:
            self(archs=archs)
            values = torch.cat([z.flatten() for z in self._collect])
        finally:
            self._collect = None
        if not torch.isfinite(values).all():
            return 1.0
        return float((values.abs() > self.SATURATED[self.tanh_constant is not None]).float().mean())

    def logits(self, i: int, h: torch.Tensor, chosen: Sequence[torch.Tensor],
               anchors_w1: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """Decision i's logits, -inf on choices the rule forbids."""
        if self.head_of[i] is None:  # attention over the cell's nodes so far
            assert anchors_w1 is not None
            keys = torch.stack(list(anchors_w1[:self.sizes[i]]), 1)  # (n, choices, lstm)
            z = self.v_attn(torch.tanh(keys + self.w_attn_2(h)[:, None, :])).squeeze(-1)
            squash = self.tanh_constant
        else:
            z = self.heads[self.head_of[i]](h)
            squash = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
        if self.temperature is not None:
            z = z / self.temperature
        if self._collect is not None:
            self._collect.append(z.detach())
        if squash is not None:
            z = squash * torch.tanh(z)
        if i in self.exceeds or i in self.below:
            choices = torch.arange(self.sizes[i], device=z.device)[None, :]
            allowed = torch.ones_like(z, dtype=torch.bool)
            if i in self.below:
                allowed = allowed & (choices < self.below[i])
            if i in self.exceeds:
                allowed = allowed & (choices > chosen[self.exceeds[i]][:, None])
            # a row with nothing allowed comes from a forced invalid earlier choice (teacher forcing): its log-prob
            # is already -inf, so leave this decision unmasked rather than produce NaNs
            allowed = allowed | ~allowed.any(-1, keepdim=True)
            z = z.masked_fill(~allowed, float("-inf"))
        return z

    def forward(self, archs: Optional[torch.Tensor] = None, n: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample n archs (archs=None) or score the given ones (an n x num_decisions long tensor, teacher forcing).
        Returns (archs, log-probability of each, entropy of each: sum over decisions of the entropy of the
        distribution the choice was drawn from)."""
        if archs is not None:
            n = archs.shape[0]
        if n is None or n < 1:
            raise ValueError("give archs or n >= 1")
        h = c = self.g_emb.new_zeros(n, self.g_emb.shape[1])
        start = self.g_emb.expand(n, -1)
        x = start
        chosen: list[torch.Tensor] = []
        log_prob = entropy = self.g_emb.new_zeros(n)
        anchors: list[torch.Tensor] = []
        anchors_w1: list[torch.Tensor] = []
        cell: Optional[str] = None
        for i, d in enumerate(self.decisions):
            if self.attends and d.cell is not None and d.cell != cell:  # a new cell: anchors of its inputs
                cell, anchors, anchors_w1, x = d.cell, [], [], start
                for _ in range(d.node or 0):
                    h, c = self.lstm(x, (h, c))
                    anchors.append(torch.zeros_like(h))
                    anchors_w1.append(self.w_attn_1(h))
            h, c = self.lstm(x, (h, c))
            log_p = F.log_softmax(self.logits(i, h, chosen, anchors_w1), dim=-1)
            if archs is None:
                a = torch.multinomial(log_p.detach().exp(), 1, generator=generator).squeeze(1)
            else:
                a = archs[:, i]
            log_prob = log_prob + log_p.gather(1, a[:, None]).squeeze(1)
            with torch.no_grad():  # entropy is a reward bonus only (no gradient, as in the official code)
                lp = log_p.detach()
                entropy = entropy + -(lp.exp() * lp.masked_fill(~torch.isfinite(lp), 0.0)).sum(-1)
            chosen.append(a)
            if self.head_of[i] is None:
                x = torch.stack(anchors, 1)[torch.arange(n), a]  # the chosen node's anchor
            else:
                x = self.embeddings[self.head_of[i]](a)
            nxt = self.decisions[i + 1] if i + 1 < len(self.decisions) else None
            if (self.attends and d.node is not None
                    and (nxt is None or (nxt.cell, nxt.node) != (d.cell, d.node))):  # the node is built
                h, c = self.lstm(x, (h, c))
                anchors.append(h)
                anchors_w1.append(self.w_attn_1(h))
                x = start
        return torch.stack(chosen, 1), log_prob, entropy


def _as_tensor(archs: Sequence[Arch]) -> torch.Tensor:
    return torch.tensor([list(a) for a in archs], dtype=torch.long)


class ControllerKind(Choice):
    official_micro = "official_micro"  # melodyguan/enas micro_controller.py: shared op head, attention inputs
    paper = "paper"  # a generic head per decision with the paper's constants


# Each controller's constants (the defaults of the hyperparameters left null)
CONTROLLER_CONSTANTS: dict[ControllerKind, dict[str, Optional[float]]] = {
    ControllerKind.official_micro: {"tanh_constant": 1.1, "temperature": None, "controller_lr": 3.5e-3,
                                    "op_tanh_reduce": 2.5},
    ControllerKind.paper: {"tanh_constant": 2.5, "temperature": 5.0, "controller_lr": 3.5e-4, "op_tanh_reduce": 1.0},
}


@dataclass
class ENASHparams:
    controller: ControllerKind = ControllerKind.official_micro  # official_micro | paper (see CONTROLLER_CONSTANTS)
    lstm_size: int = 64  # controller LSTM hidden size (official code: 64; the paper's PTB controller: 100)
    # logits = c * tanh(logits / temperature); null: the controller's constant (CONTROLLER_CONSTANTS); 0: off
    tanh_constant: Optional[float] = None
    temperature: Optional[float] = None  # null: the controller's (official_micro: off, paper: 5.0); 0: off
    op_tanh_reduce: Optional[float] = None  # op logits use tanh_constant / this (official_micro: 2.5, paper: 1)
    controller_lr: Optional[float] = None  # Adam lr of the controller; null: official_micro 3.5e-3, paper 3.5e-4
    baseline_decay: float = 0.99  # moving-average baseline decay (official controller_bl_dec: 0.99)
    entropy_weight: float = 1e-4  # sample entropy added to the reward (paper: 1e-4)
    controller_aggregate: int = 10  # sampled archs whose REINFORCE gradients one Adam step averages (official: 10)
    # Adam steps per epoch; null = ceil(training steps per epoch / controller_aggregate), i.e. about one controller
    # sample per shared-weight step, the official ratio (30 x 10 = 300 samples per ~281 steps of 45k images / 160)
    controller_steps: Optional[int] = None

    def __post_init__(self) -> None:
        if self.lstm_size < 1 or self.controller_aggregate < 1:
            raise ConfigError(f"method.params.lstm_size and controller_aggregate must be >= 1, got {self.lstm_size} "
                              f"and {self.controller_aggregate}.")
        if self.controller_steps is not None and self.controller_steps < 0:
            raise ConfigError(f"method.params.controller_steps must be >= 0 or null, got {self.controller_steps}.")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"method.params.baseline_decay must be in [0, 1), got {self.baseline_decay}.")
        if self.controller_lr is not None and self.controller_lr <= 0:
            raise ConfigError(f"method.params.controller_lr must be > 0 or null, got {self.controller_lr}.")
        for key in ("tanh_constant", "temperature", "op_tanh_reduce"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise ConfigError(f"method.params.{key} must be >= 0 (0: off) or null (the controller's), got "
                                  f"{getattr(self, key)}.")
        if self.op_tanh_reduce == 0:
            raise ConfigError("method.params.op_tanh_reduce must be > 0 (it divides tanh_constant) or null.")

    def constants(self) -> dict[str, Optional[float]]:
        """The controller's constants with this run's overrides; 0 (off) becomes None."""
        out = dict(CONTROLLER_CONSTANTS[self.controller])
        for key in out:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key) or None
        return out


@register_method("enas")
class ENAS(SupernetMethod):
    Hparams = ENASHparams
    host_reads_per_step = {
        "sample_archs": "the CPU controller's sampled decisions choose the path (CPU tensors, no device sync)",
        "reinforce_step": "statistics of the CPU controller's update (CPU tensors, no device sync)",
        "reward_accuracies": "the CPU controller's rewards: one device read per controller step",
    }

    def build(self) -> None:
        hp = self.hp
        super().build()
        # The controller is tiny and stays on the CPU (sampling with the CPU generator) whatever the device.
        self.constants = hp.constants()
        self.controller = Controller(self.ctx.space.decisions, hp.lstm_size, self.constants["tanh_constant"],
                                     self.constants["temperature"], op_tanh_reduce=self.constants["op_tanh_reduce"],
                                     attention=hp.controller == ControllerKind.official_micro)
        self.c_optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.constants["controller_lr"])
        self.baseline = 0.0
        self.controller_steps = (math.ceil(self.steps_per_epoch / hp.controller_aggregate)
                                 if hp.controller_steps is None else hp.controller_steps)
        self.derive_candidates: dict[Arch, float] = {}

    # ---- controller --------------------------------------------------------------------------------------------
    def sample_archs(self, n: int) -> list[Arch]:
        with torch.no_grad():
            archs, _, _ = self.controller(n=n, generator=self.generator)
        out = [tuple(row) for row in archs.tolist()]
        bad = [a for a in out if not self.ctx.space.is_valid(a)]
        if bad:  # cannot happen with the masks; fail loudly rather than train on an invalid arch
            raise RuntimeError(f"enas controller sampled an invalid arch {bad[0]} in space {self.ctx.space.name}")
        return out

    def log_probs(self, archs: Sequence[Arch]) -> torch.Tensor:
        """Controller log-probability of each arch (teacher forcing; -inf for archs the masks exclude)."""
        return self.controller(archs=_as_tensor(archs))[1]

    @torch.no_grad()
    def batch_accuracy(self, path: Path, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy (fraction, a device scalar) of one path on one batch, BatchNorm on batch statistics."""
        with batch_stat_bn(self.supernet):
            return (self.supernet(x, path).argmax(1) == y).float().mean()

    def reward_accuracies(self, archs: Sequence[Arch]) -> list[float]:
        """The rewards of a controller batch, each on its own random search-val batch, read back in one host sync
        (the controller, on the CPU, needs them)."""
        accs = [self.batch_accuracy(self.path_of(a), *self.random_val_batch()) for a in archs]
        return torch.stack(accs).tolist() if accs else []

    def reinforce_step(self, archs: Sequence[Arch], accuracies: Sequence[float]) -> dict[str, float]:
        """One Adam step of the controller on REINFORCE with the moving-average baseline; returns statistics."""
        _, log_prob, entropy = self.controller(archs=_as_tensor(archs))
        advantages = []
        rewards = [acc + self.hp.entropy_weight * ent for acc, ent in zip(accuracies, entropy.tolist(), strict=True)]
        for r in rewards:
            advantages.append(r - self.baseline)
            self.baseline = self.hp.baseline_decay * self.baseline + (1.0 - self.hp.baseline_decay) * r
        loss = -(log_prob * torch.tensor(advantages, dtype=log_prob.dtype)).mean()
        self.c_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.c_optimizer.step()
        return {"reward": sum(rewards) / len(rewards), "entropy": entropy.mean().item(),
                "log_prob": log_prob.mean().item(), "baseline": self.baseline}

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.controller.train()
        steps = EpochMeans()
        for x, y in self.train_batches():
            steps.add("train_loss", self.weight_step(self.path_of(self.sample_archs(1)[0]), x, y), self.training_where)
        stats: list[dict[str, float]] = []
        archs: list[Arch] = []
        for _ in range(self.controller_steps):
            archs = self.sample_archs(self.hp.controller_aggregate)
            stats.append(self.reinforce_step(archs, self.reward_accuracies(archs)))
        if archs:
            self.check_controller(epoch, archs)
        out = {**steps.means(), "lr": self.w_scheduler.get_last_lr()[0], "baseline": self.baseline}
        for key in ("reward", "entropy", "log_prob"):
            if stats:
                out[f"controller_{key}"] = sum(s[key] for s in stats) / len(stats)
        return out

    def check_controller(self, epoch: int, archs: Sequence[Arch]) -> None:
        """Fail loudly when the controller blows up: most of its logits saturated (it no longer learns and samples
        the same arch) or not finite. Checked once per epoch on the last REINFORCE batch."""
        share = self.controller.saturation(_as_tensor(archs))
        if share > 0.5:
            raise DivergenceError(
                f"enas: the controller saturated in epoch {epoch}: {100 * share:.0f}% of its logits are beyond "
                f"|{self.controller.SATURATED[self.constants['tanh_constant'] is not None]:.0f}| before the squashing "
                f"(or not finite), so REINFORCE no longer moves it. Lower method.params.controller_lr (now "
                f"{self.constants['controller_lr']}); the run's last checkpoint is kept.")

    def score(self, archs: list[Arch]) -> list[float]:
        scores = super().score(archs)
        with torch.no_grad():
            self.extra_scores = {"controller_log_prob": [float(v) for v in self.log_probs(archs)]} if archs else {}
        return scores

    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """n distinct controller samples (up to 10 n draws: a converged controller repeats itself), ranked by
        supernet accuracy. With a ground truth covering a subset of the space (`arch_pool`), the n covered archs
        the controller finds most likely instead (an adaptation to subset truths), ranked the same way."""
        pool = self.ctx.arch_pool
        if pool is not None:
            with torch.no_grad():
                log_probs = self.log_probs(list(pool)).tolist()
            order = sorted(range(len(pool)), key=lambda i: -log_probs[i])
            candidates = [tuple(pool[i]) for i in order[:n]]
        else:
            candidates = distinct_archs(lambda: self.sample_archs(1)[0], n, max_draws=10 * n)
        ranking = rank(candidates, self.cached("derive", self.supernet_accuracy), "enas derive")
        self.derive_candidates = dict(ranking)
        return ranking

    def artifacts(self) -> dict[str, Any]:
        if not self.derive_candidates:
            return {}
        enc = self.ctx.space.encode
        return {"enas_derive": [{"arch": enc(a), "supernet_acc": v} for a, v in self.derive_candidates.items()]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "controller": self.controller.state_dict(),
                "c_optimizer": self.c_optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.c_optimizer.load_state_dict(state["c_optimizer"])
        self.baseline = state["baseline"]
