"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): path-level binarization, with an optional hardware (latency) loss.

By default (`latency_metric: off`) there is NO resource term: every method of a comparison searches for accuracy
alone, so ProxylessNAS' found arch and final accuracy compare with the others' (with the paper's latency term on,
it alone would be pushed toward cheap archs, on a cell space toward the zero op). The hardware loss is an option below.

Each supernet choice point has architecture parameters alpha, p = softmax(alpha).

- Weight step (every training batch): ONE path per choice point is sampled from p and passed as an int path
  entry, so only that candidate holds activations and receives gradients (the paper's binarized gates with
  unused paths off); the shared SGD optimizer and cosine schedule of every supernet method.
- Architecture step (every `arch_update_every`-th weight step, after the warm-up): on a search-val batch
  (not augmented, as the official valid loader), per choice point TWO candidates are sampled from p without
  replacement, their probabilities renormalized (p~ = softmax of their two alphas), one of them made active by
  sampling from p~, and the binary gates g (1 for the active, 0 for the other) weight the two candidates
  (`WeightedChoice(two indices, g)`; both run, the gated-off one contributes 0 * output, as in the official
  'two' mode). The gradient reaches alpha through the paper's estimate (Eq. 4 restricted to the two paths)

      dL/dalpha_i = sum_j dL/dg_j * p~_j * (delta_ij - p~_i),

  implemented as an EXPLICIT backward: the gates are a leaf tensor, autograd gives dL/dg, and
  `binary_gate_alpha_grad` applies the formula (a straight-through estimate g + p~ - stop_grad(p~) gives the same
  numbers; tests check both). After Adam's step the two involved alphas are shifted together so that their
  log-sum-exp is unchanged, which keeps the probabilities of the unsampled candidates as they were (official
  `rescale_updated_arch_param`). A choice point whose active candidate is the zero op (by the space's op traits)
  gets no architecture update in that step, as in the official code.
- Hardware loss: E[cost] = fixed + sum over choice points of sum_i p_i * table[point][i] (the paper's expected
  latency, with the full p; differentiable in alpha), combined with the cross-entropy as
  `latency_loss: mul_log` (the official default, `mul#log`):
                        alpha * L_CE * (log E / log target) ** beta  (official search script: alpha 0.2, beta 0.3),
  `latency_loss: add`:  L_CE + lambda * (E - target) / target  (the paper's L_CE + lambda_2 E[LAT], normalized by
                        the target as the official `add#linear`, so lambda has no unit), or
  `latency_loss: mul`:  L_CE * (E / target) ** beta  (a multiplicative form without the log).
  `latency_metric: latency` uses a lookup table MEASURED on the run's device (see `measure_cost_table`: the median
  of `latency_repeats` warmed-up timings per module, all timings' medians recorded), `flops` a table of FLOPs per
  candidate from torch.utils.flop_counter, `off` (default) no hardware loss. The target is part of the run's
  identity: `latency_metric: latency` needs an explicit `latency_target_ms` (a measured default could not be in
  the run id); with `flops` a null target is E[FLOPs] at uniform p, a function of the config.

The table is built at the start of the first training epoch (its cost counts as search cost), kept in
`self.latency_table` (a JSON-able dict) and in `state_dict`, and the runner writes it to
`<run dir>/latency_table.json` (see `artifacts`).

Host reads per step (`host_reads_per_step`, enforced by tests/test_host_syncs.py): the gates pick which ops run, so
paths are sampled on the host, from a CPU copy of the alphas that `host_alphas` refreshes with one device read after
each architecture step; `sample_single_path` and `sample_two_paths` then read CPU tensors only (no device sync).
Losses and architecture-step statistics stay on the device until the epoch ends.

Derive: argmax of alpha per choice point (`space.derive_from_weights(softmax(alpha))`). Ranking: supernet accuracy
of the single path (BN as below); `extra_scores["alpha_log_likelihood"]` as in DARTS.

BN when scoring a subnet (`scoring.bn_mode`, methods/bn_scoring.py): ProxylessNAS scores no sampled subnet; it keeps the
argmax of the alphas (official `convert_to_normal_net`, search/models/super_nets/super_proxyless.py), and its search
only monitors that argmax net, in `NASManager.validate` (search/nas_manager.py) with `use_train_mode=True`, so every BN
on the batch's statistics. Here the mode applies only to the ranking of the shared sample (`score`, a proxy of this
harness), not to derive or `ranked` (the alphas alone); default: the space's (`SearchSpace.scoring_bn_mode`:
batch_stats_choice on the NAS-Bench-201 space, chosen across seeds in issue 28; recalibrate_all elsewhere); no mode is
the official one (none puts the fixed BNs on batch statistics).

Spaces: any space with a supernet whose choice points each pick one op freely (the paper's setting: one op per
layer of a chain; a cell whose edges each pick an op, the zero op costing 0). Not a space that declares
input-selection constraints (a DARTS cell also picks which two inputs each node keeps), which the binarized
single-path gates do not model.

Departures from mit-han-lab/proxylessnas: the default has no hardware loss (above); the supernet is the harness'
space, not the paper's MobileNetV2 space with its kernel/expansion candidates; the latency table is measured on
the run's own device at run time (the official code ships per-device tables); the weight optimizer, its schedule
and the warm-up length come from the budget and `warmup_fraction`, not the official 40 + 120 ImageNet epochs; no
label smoothing.
"""
from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.config import Choice
from oneshot_bench.device import device_name, host_to
from oneshot_bench.errors import ConfigError
from oneshot_bench.measure import flops_of_calls, median_latency_ms
from oneshot_bench.training import EpochMeans
from search_spaces.base import SearchSpace, WeightedChoice

from .base import register_method
from .darts import ArchDistributionMethod, alpha_entropy, alpha_probs, init_alphas


class CostMetric(Choice):
    latency = "latency"  # lookup table measured on the run's device (ms)
    flops = "flops"  # FLOPs per candidate (FlopCounterMode)
    off = "off"  # no hardware loss


class CostLoss(Choice):
    mul_log = "mul_log"  # alpha * L_CE * (log E / log T) ** beta (official `mul#log`, its default)
    add = "add"  # L_CE + lambda * (E - T) / T (paper; official `add#linear`)
    mul = "mul"  # L_CE * (E / T) ** beta


UNITS = {CostMetric.latency: "ms", CostMetric.flops: "FLOPs"}


def binary_gate_alpha_grad(gate_grads: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """ProxylessNAS' estimate dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i) over the sampled paths
    (`probs` renormalized over them, `gate_grads` = dL/dg of their binary gates)."""
    eye = torch.eye(len(probs), dtype=probs.dtype, device=probs.device)
    return ((eye - probs[:, None]) * (gate_grads * probs)[None, :]).sum(dim=1)


@dataclass
class ProxylessNASHparams:
    arch_lr: float = 1e-3  # Adam on the alphas (official: lr 1e-3, betas (0, 0.999), eps 1e-8, no weight decay)
    arch_beta1: float = 0.0
    arch_beta2: float = 0.999
    arch_eps: float = 1e-8
    arch_weight_decay: float = 0.0
    alpha_init_std: float = 1e-3  # alphas start at alpha_init_std * N(0, 1) (official 'normal', 1e-3)
    arch_update_every: int = 5  # one architecture update per this many weight steps (official: 5)
    arch_update_steps: int = 1  # architecture steps per update (official: 1)
    warmup_fraction: float = 0.25  # share of search epochs with weight steps only (official: 40 of 40 + 120)
    latency_metric: CostMetric = CostMetric.off  # off (no resource term: comparable) | latency (measured) | flops
    latency_loss: CostLoss = CostLoss.mul_log  # mul_log (official) | add (paper) | mul, see the module docstring
    latency_alpha: float = 0.2  # alpha of mul_log (official search script: 0.2)
    latency_lambda: float = 0.1  # lambda of the additive form (official add#linear default: 0.1)
    latency_beta: float = 0.3  # beta of mul_log and mul (official search script: 0.3)
    latency_target_ms: Optional[float] = None  # target T for latency_metric=latency (required there)
    flops_target: Optional[float] = None  # target T for latency_metric=flops; null: E[FLOPs] at uniform p
    latency_batch_size: int = 1  # batch size of the latency measurements (the paper: 1 image on the device)
    latency_repeats: int = 20  # timed runs per candidate (the median counts), after 3 warm-up runs

    def __post_init__(self) -> None:
        if self.arch_update_every < 1 or self.arch_update_steps < 0 or not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"method.params: need arch_update_every >= 1, arch_update_steps >= 0 and "
                              f"0 <= warmup_fraction <= 1, got {self.arch_update_every}, {self.arch_update_steps} "
                              f"and {self.warmup_fraction}.")
        if self.latency_batch_size < 1 or self.latency_repeats < 1:
            raise ConfigError(f"method.params.latency_batch_size and latency_repeats must be >= 1, got "
                              f"{self.latency_batch_size} and {self.latency_repeats}.")
        for key in ("latency_target_ms", "flops_target"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"method.params.{key} must be > 0 or null, got {getattr(self, key)}.")
        if self.latency_metric == CostMetric.latency and self.latency_target_ms is None:
            raise ConfigError("method.params.latency_target_ms: latency_metric=latency needs an explicit target in "
                              "ms, so that the run id names it (a target measured during the run could not be); "
                              "set it, e.g. method.params.latency_target_ms=5 (a run's latency_table.json records "
                              "the uniform expectation to choose one from), or use latency_metric=flops or off.")
        if self.latency_alpha <= 0:
            raise ConfigError(f"method.params.latency_alpha must be > 0, got {self.latency_alpha}.")


@register_method("proxylessnas")
class ProxylessNAS(ArchDistributionMethod):
    Hparams = ProxylessNASHparams
    host_reads_per_step = {
        "host_alphas": "one device read of the alphas after each architecture step (gates are sampled on the host)",
        "sample_single_path": "the weight step's path from the CPU copy of the alphas (no device sync)",
        "sample_two_paths": "the architecture step's two paths and active gate from the CPU copy (no device sync)",
    }

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> Optional[str]:
        reason = super().unsupported_reason(space)
        if reason is None and space.input_selections:
            reason = ("its binary gates pick one op per choice point independently, while this space's archs also "
                      "select which inputs each node keeps (it declares input-selection constraints), which "
                      "single-path gates do not model")
        return reason

    def build(self) -> None:
        hp = self.hp
        super().build()
        self.alphas = init_alphas(self.supernet, hp.alpha_init_std, self.generator, self.ctx.device)
        self.a_optimizer = torch.optim.Adam(self.alphas, lr=hp.arch_lr, betas=(hp.arch_beta1, hp.arch_beta2),
                                            eps=hp.arch_eps, weight_decay=hp.arch_weight_decay)
        self.candidate_names = [cp.candidates for cp in self.supernet.choice_points]
        self.zero_index = [cp.zero_index for cp in self.supernet.choice_points]
        self.warmup_epochs = int(round(hp.warmup_fraction * self.ctx.budget.search_epochs))
        self.global_step = 0
        self.latency_table: Optional[dict[str, Any]] = None
        self._cost: Optional[list[torch.Tensor]] = None
        self.last_arch_sample: list[tuple[int, int, int]] = []  # (sampled i, sampled j, active) per choice point
        self._host_alphas: Optional[list[torch.Tensor]] = None  # CPU copy for sampling, until the alphas move

    def host_alphas(self) -> list[torch.Tensor]:
        """The alphas on the CPU (float32), copied in one host read after each architecture step: the weight steps
        between architecture steps sample their paths without touching the device."""
        if self._host_alphas is None:
            flat = torch.cat([a.detach().float() for a in self.alphas]).cpu()
            self._host_alphas = list(flat.split([a.numel() for a in self.alphas]))
        return self._host_alphas

    # ---- sampling ----------------------------------------------------------------------------------------------------
    def sample_single_path(self) -> list[int]:
        """One candidate per choice point, drawn from softmax(alpha)."""
        return [int(torch.multinomial(p, 1, generator=self.generator)) for p in alpha_probs(self.host_alphas())]

    def sample_two_paths(self) -> list[tuple[int, int, int]]:
        """Per choice point: two distinct candidates from softmax(alpha) (no replacement), and which of them is
        active, drawn from their renormalized probabilities."""
        out = []
        host = self.host_alphas()
        for a, p in zip(host, alpha_probs(host), strict=True):
            i, j = (int(k) for k in torch.multinomial(p, 2, replacement=False, generator=self.generator))
            pair = F.softmax(a[[i, j]], dim=0)
            active = (i, j)[int(torch.multinomial(pair, 1, generator=self.generator))]
            out.append((i, j, active))
        return out

    # ---- hardware cost -----------------------------------------------------------------------------------------------
    def expected_cost(self) -> torch.Tensor:
        """E[cost] = fixed + sum_points sum_i softmax(alpha)_i * table[point][i], differentiable in alpha."""
        self.ensure_cost_table()
        assert self._cost is not None and self.latency_table is not None
        total = torch.tensor(float(self.latency_table["fixed"]), device=self.ctx.device)
        for p, c in zip(alpha_probs(self.alphas), self._cost, strict=True):
            total = total + (p * c.to(p.dtype)).sum()
        return total

    def hardware_loss(self, ce: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        target = float(self.latency_table["target"])
        if self.hp.latency_loss == CostLoss.add:
            return ce + self.hp.latency_lambda * (expected - target) / target
        if self.hp.latency_loss == CostLoss.mul_log:
            return self.hp.latency_alpha * ce * (torch.log(expected) / math.log(target)) ** self.hp.latency_beta
        return ce * (expected / target) ** self.hp.latency_beta

    def ensure_cost_table(self) -> None:
        if self.hp.latency_metric == CostMetric.off or self.latency_table is not None:
            return
        self.latency_table = self.measure_cost_table()
        self._set_cost_tensors()

    def _set_cost_tensors(self) -> None:
        self._cost = [torch.tensor(row, dtype=torch.float32, device=self.ctx.device)
                      for row in self.latency_table["table"]]

    def measure_cost_table(self) -> dict[str, Any]:
        """Per choice point and candidate: latency (ms, in eval mode, median of `latency_repeats` warmed-up timed
        runs, round-robin over all modules, so that interference from other processes hits all alike) or FLOPs
        (per image, torch's FlopCounterMode) of the candidate module, summed over every module instance that follows
        that choice point (`supernet.choice_ops(point)`: one per cell of a cell space, the one layer of a chain);
        each is run alone on a random tensor of the input shape that forward pre-hooks recorded during one forward
        pass of the full supernet. The zero op costs 0.
        `fixed` is the rest of the network (stem, fixed blocks, head): whole-network cost of 3 random single paths
        minus their table entries (median, at least 0)."""
        metric, sn, ctx = self.hp.latency_metric, self.supernet, self.ctx
        instances = [sn.choice_ops(point) for point in range(len(sn.choice_points))]
        shapes: dict[int, tuple[int, ...]] = {}

        def record_shape(module: nn.Module, args: tuple[Any, ...]) -> None:  # returning None keeps the inputs
            shapes.setdefault(id(module), tuple(args[0].shape))

        hooks = [mod.register_forward_pre_hook(record_shape) for inst in instances for cands in inst for mod in cands]
        x = torch.zeros(1, ctx.data.in_channels, ctx.data.resolution, ctx.data.resolution, device=ctx.device)
        full = [WeightedChoice(tuple(range(len(n))), torch.ones(len(n), device=ctx.device))
                for n in self.candidate_names]
        was_training = sn.training
        sn.eval()
        try:
            with torch.no_grad():
                sn(x.contiguous(memory_format=torch.channels_last), full)
            for h in hooks:
                h.remove()
            # one job per (choice point, candidate, instance), then whole networks for the fixed part
            batch = self.hp.latency_batch_size if metric == CostMetric.latency else 1
            gen = torch.Generator().manual_seed(ctx.seed)
            jobs: list[Callable[[], Any]] = []
            owners: list[tuple[int, int]] = []
            for point, inst in enumerate(instances):
                for k, name in enumerate(self.candidate_names[point]):
                    if k == self.zero_index[point]:
                        continue
                    for cands in inst:
                        if id(cands[k]) not in shapes:
                            raise RuntimeError(f"candidate {name!r} of choice point {point} did not run in a full "
                                               f"supernet forward pass; cannot measure its cost")
                        jobs.append(_bind(cands[k], _random_input(shapes[id(cands[k])], batch, gen, ctx.device)))
                        owners.append((point, k))
            rng = random.Random(ctx.seed)
            paths = [ctx.space.arch_to_path(ctx.space.sample(rng)) for _ in range(3)]
            net_input = _random_input((1, *x.shape[1:]), batch, gen, ctx.device)
            jobs.extend(_bind(sn, net_input, path) for path in paths)
            if metric == CostMetric.flops:
                costs = flops_of_calls(jobs)
            else:
                costs = median_latency_ms(jobs, ctx.device, self.hp.latency_repeats)
        finally:
            for h in hooks:
                h.remove()
            sn.train(was_training)
        table = [[0.0] * len(names) for names in self.candidate_names]
        for (point, k), c in zip(owners, costs[:len(owners)], strict=True):  # summed over instances
            table[point][k] += c
        wholes = costs[len(owners):]
        fixed = max(0.0, statistics.median(w - sum(row[k] for row, k in zip(table, path, strict=True))
                                           for w, path in zip(wholes, paths, strict=True)))
        uniform = fixed + sum(sum(row) / len(row) for row in table)
        given = self.hp.latency_target_ms if metric == CostMetric.latency else self.hp.flops_target
        target = float(given) if given is not None else uniform
        if target <= 0 or (self.hp.latency_loss == CostLoss.mul_log and target <= 1):
            raise ConfigError(f"proxylessnas: the {metric} target must be > 0 (> 1 for latency_loss=mul_log, whose "
                              f"log(target) divides), got {target}; set method.params."
                              f"{'latency_target_ms' if metric == CostMetric.latency else 'flops_target'}.")
        how = ("each candidate module run alone on a random input of the shape that forward pre-hooks recorded in "
               "one full supernet pass, summed over the module instances of its choice point; fixed = whole network "
               "minus its ops (median over 3 random archs)")
        if metric == CostMetric.latency:
            how += (f"; latency = median of {self.hp.latency_repeats} timed runs after 3 warm-up rounds, interleaved "
                    f"over all modules")
        return {"metric": metric.value, "unit": UNITS[metric], "device": device_name(ctx.device),
                "batch_size": batch, "how": how, "choice_points": [cp.name for cp in sn.choice_points],
                "candidates": [list(n) for n in self.candidate_names],
                "table": table, "fixed": fixed, "target": target, "target_is_uniform_expectation": given is None,
                "uniform_expectation": uniform, "loss": self.hp.latency_loss.value}

    # ---- steps -------------------------------------------------------------------------------------------------------
    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One architecture update on a search-val batch (two sampled paths per choice point, binary gates); its
        statistics as detached device scalars (no host sync besides sampling from the CPU copy of the alphas)."""
        self.supernet.train()
        sample = self.sample_two_paths()
        self.last_arch_sample = sample
        flags = torch.tensor([[1.0 if i == active else 0.0, 1.0 if j == active else 0.0] for i, j, active in sample])
        gates = [g.clone().requires_grad_(True) for g in host_to(flags, x.device).unbind(0)]  # one queued copy
        path = [WeightedChoice((i, j), g) for (i, j, _), g in zip(sample, gates, strict=True)]
        ce = F.cross_entropy(self.supernet(x, path), y)
        loss, stats = ce, {"arch_ce": ce.detach()}
        if self.hp.latency_metric != CostMetric.off:
            expected = self.expected_cost()
            loss = self.hardware_loss(ce, expected)
            stats["expected_cost"] = expected.detach()
        inputs = [*gates, *self.alphas]
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        gate_grads, direct = grads[:len(gates)], grads[len(gates):]  # direct: through E[cost] (full softmax)

        self.a_optimizer.zero_grad(set_to_none=True)
        involved: list[Optional[tuple[list[int], torch.Tensor]]] = []
        for a, zero, (i, j, active), gg, dg in zip(self.alphas, self.zero_index, sample, gate_grads, direct,
                                                    strict=True):
            if active == zero:  # the active path is the zero op: no update of this point (official code)
                involved.append(None)
                continue
            grad = torch.zeros_like(a) if dg is None else dg.detach().clone()
            gg = torch.zeros(2, device=a.device) if gg is None else gg.detach()
            pair = F.softmax(a.detach()[[i, j]], dim=0)
            grad[[i, j]] += binary_gate_alpha_grad(gg.to(pair.dtype), pair)
            a.grad = grad
            involved.append(([i, j], a.detach()[[i, j]].clone()))
        self.a_optimizer.step()
        with torch.no_grad():  # keep the probabilities of the unsampled candidates (official rescaling)
            for a, inv in zip(self.alphas, involved, strict=True):
                if inv is not None:
                    idx, old = inv
                    a[idx] -= torch.logsumexp(a[idx], 0) - torch.logsumexp(old, 0)
        self._host_alphas = None  # the alphas moved
        stats["arch_loss"] = loss.detach()
        return stats

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.ensure_cost_table()
        b = self.ctx.budget
        search = epoch >= self.warmup_epochs and self.hp.arch_update_steps > 0
        val = self.ctx.data.infinite_batches("val", b.batch_size, self.generator, augment=False) if search else None
        steps, arch_steps = EpochMeans(), EpochMeans()
        where = "proxylessnas architecture step" + (f" (hardware loss {self.hp.latency_loss.value!r})"
                                                     if self.hp.latency_metric != CostMetric.off else "")
        for x, y in self.train_batches():
            steps.add("train_loss", self.weight_step(self.sample_single_path(), x, y), self.training_where)
            self.global_step += 1
            if val is not None and self.global_step % self.hp.arch_update_every == 0:
                for _ in range(self.hp.arch_update_steps):
                    for key, value in self.arch_step(*next(val)).items():
                        arch_steps.add(key, value, where if key == "arch_loss" else None)
        arch_means = arch_steps.means()
        n_arch = arch_steps.counts.get("arch_loss", 0)
        out = {**steps.means(), "lr": self.w_scheduler.get_last_lr()[0]}
        self.check_alphas(epoch)
        out.update({"alpha_entropy": alpha_entropy(self.alphas), "arch_steps": float(n_arch), **arch_means})
        if self.hp.latency_metric != CostMetric.off:
            with torch.no_grad():
                out["expected_cost_end"] = self.expected_cost().item()
        return out

    # ---- results -----------------------------------------------------------------------------------------------------
    def artifacts(self) -> dict[str, Any]:
        """Kept beside the run record: the final architecture distribution and the measured cost table."""
        table = {"latency_table": self.latency_table} if self.latency_table else {}
        return {**super().artifacts(), **table}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "global_step": self.global_step, "latency_table": self.latency_table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.global_step = state["global_step"]
        self.latency_table = state["latency_table"]
        self._host_alphas = None
        if self.latency_table is not None:
            self._set_cost_tensors()


def _random_input(shape: tuple[int, ...], batch: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    x = torch.randn((batch, *shape[1:]), generator=gen).to(device)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _bind(module: nn.Module, *args: Any) -> Callable[[], Any]:
    return lambda: module(*args)
