"""What weight sharing costs per image: each method's search step against the standalone step of the same arch,
measured as ratios in one run (pytest-benchmark's groups in benchmarks/test_search_step.py; this module's CLI for
the README's table).

    python benchmarks/step_ratios.py [--spaces nb201 darts_cell mbnet_chain] [--budget cpu] [--repeats 15]
        [--device auto] [--precision fp32] [--cifar ../shared/data/cifar10-subset]

Each case times two callables alternately (A B, B A, A B, ...) after a warm-up, so both see the same machine
load, and reports the median of the per-pair ratios:
- single-path weight step (SPOS, ENAS, ProxylessNAS, GreedyNAS) against the standalone net of the same arch, both at
  the budget's search net size and batch: the target is <= 1.1x;
- DARTS' mixed op as its weight step runs it (every candidate, weighted, DARTS' BN after pooling) against the sum of
  the same candidates run one by one, forward and backward, on the input one choice point sees in the supernet: the
  target is <= 1.15x;
- DARTS' and One-Shot's whole-supernet steps (all candidates run: no target, for scale);
- GHN's and SMASH's generated-weights step (generate, run, backpropagate into the hypernetwork) against the
  standalone step of the same arch;
- scoring with BN recalibration (`method.score([arch])`: budget.bn_recalibration_batches train batches, then
  budget.score_batches val batches) against the same recalibration and evaluation of the standalone net, in archs/s.
A step runs on the method's own optimizer and schedule (weights move between repeats, as in training); timings are
wall clock with a device synchronize on CUDA.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SINGLE_PATH = ("spos", "enas", "proxylessnas", "greedynas")
ALL_CANDIDATES = ("darts", "oneshot")
HYPERNETS = ("ghn", "smash")
SCORED = ("spos",)  # every supernet method scores through SupernetMethod.supernet_accuracy: one row stands for all
TARGETS = {"single-path weight step": 1.1, "mixed op (all candidates)": 1.15}


def kinds_of(method: str) -> list[str]:
    """The kinds of step `cases_for` times for a method, in order."""
    return ((["single-path weight step"] if method in SINGLE_PATH else [])
            + (["mixed op (all candidates)", "mixed supernet weight step"] if method == "darts" else [])
            + (["one-shot step (path dropout)"] if method == "oneshot" else [])
            + (["generated-weights step"] if method in HYPERNETS else [])
            + (["scoring (BN recalibration)"] if method in SCORED else []))


@dataclass
class StepCase:
    """Two callables to time against each other; `images` is how many images one call processes."""

    method: str
    space: str
    kind: str
    reference_kind: str
    search: Callable[[], Any]
    reference: Callable[[], Any]
    images: int
    sync: Callable[[], None]

    @property
    def target(self) -> Optional[float]:
        return TARGETS.get(self.kind)

    @property
    def name(self) -> str:
        return f"{self.method}-{self.space}-{self.kind.split(' (')[0].replace(' ', '_')}"


@dataclass
class Ratio:
    case: StepCase
    search_s: float  # median seconds per call
    reference_s: float
    ratio: float  # median of the per-pair ratios search / reference

    def row(self) -> dict[str, Any]:
        c = self.case
        unit = "archs/s" if c.kind.startswith("scoring") else "images/s"
        per = 1 if unit == "archs/s" else c.images
        verdict = "" if c.target is None else ("ok" if self.ratio <= c.target else "ABOVE")
        return {"method": c.method, "space": c.space, "search step": c.kind, "against": c.reference_kind,
                "search " + unit: per / self.search_s, "reference " + unit: per / self.reference_s,
                "ratio": self.ratio, "target": c.target, "verdict": verdict}


def under_autocast(case: StepCase, device: torch.device, precision: str) -> StepCase:
    """The case with both sides run under the search's autocast (`precision=bf16`), as the runner runs a search."""
    from oneshot_bench.device import search_autocast

    def wrapped(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with search_autocast(device, precision):
                return fn()
        return run
    return StepCase(case.method, case.space, case.kind, case.reference_kind, wrapped(case.search),
                    wrapped(case.reference), case.images, case.sync)


def paired_ratio(case: StepCase, repeats: int, warmup: int = 2) -> Ratio:
    """Median per-pair time ratio, the two callables alternating in order so that neither always runs first."""
    def timed(fn: Callable[[], Any]) -> float:
        case.sync()
        start = time.perf_counter()
        fn()
        case.sync()
        return time.perf_counter() - start

    for _ in range(warmup):
        case.search()
        case.reference()
    search, reference = [], []
    for i in range(repeats):
        if i % 2:
            reference.append(timed(case.reference))
            search.append(timed(case.search))
        else:
            search.append(timed(case.search))
            reference.append(timed(case.reference))
    ratios = [s / r for s, r in zip(search, reference, strict=True)]
    return Ratio(case, statistics.median(search), statistics.median(reference), statistics.median(ratios))


@contextmanager
def prepared(method: str, space: str, overrides: list[str]) -> Iterator[Any]:
    """A method set up on a space exactly as a run prepares it (plan_run + prepare), results in a temp dir."""
    from hydra import compose, initialize_config_dir

    from evaluators.hydra_config import register_configs
    from evaluators.runner import plan_run, prepare
    from oneshot_bench.config import from_dictconfig

    register_configs()
    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[f"method={method}", f"space={space}", f"execution.results_dir={tmp}",
                                               f"execution.cache_dir={tmp}/cache", *overrides])
        plan = plan_run(from_dictconfig(cfg))
        prepare(plan)
        yield plan


def _sync_for(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _batch(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch of the budget's size, as the methods' loops see it (channels_last, on the device)."""
    g = torch.Generator().manual_seed(0)
    return next(iter(ctx.data.batches("train", ctx.budget.batch_size, g)))


def standalone_step(ctx, arch, x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The standalone net of `arch` at the search net's size, one SGD step per call (as train_standalone)."""
    from oneshot_bench.training import optimizer_step, sgd

    net = ctx.space.build_standalone(arch, ctx.net).to(ctx.device).to(memory_format=torch.channels_last).train()
    opt = sgd(net.parameters(), ctx.budget.lr, ctx.budget.momentum, ctx.budget.weight_decay)
    return lambda: optimizer_step(F.cross_entropy(net(x), y), opt, net, ctx.budget.grad_clip)


def standalone_scoring(ctx, arch) -> Callable[[], float]:
    """BN recalibration and evaluation of `arch`'s standalone net over the batches a supernet score uses."""
    from oneshot_bench.training import accuracy, recalibrate_bn

    b = ctx.budget
    net = ctx.space.build_standalone(arch, ctx.net).to(ctx.device).to(memory_format=torch.channels_last)

    def score() -> float:
        recalibrate_bn(net, net, ctx.data.batches("train", b.batch_size, torch.Generator().manual_seed(0),
                                                  max_batches=b.bn_recalibration_batches))
        net.eval()
        acc = accuracy(net, ctx.data.batches("val", b.batch_size, torch.Generator().manual_seed(0), shuffle=False,
                                             augment=False, max_batches=b.score_batches))
        net.train()
        return acc
    return score


def mixed_op_case(plan, x: torch.Tensor) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(DARTS' mixed op forward+backward as its weight step runs it: every candidate, weighted by detached softmax
    weights; its candidates as the mixed sum defines them, BN after pooling included, forward+backward one by one)
    at the first choice point with a parametrised candidate, on the input that point sees in the supernet."""
    from search_spaces.base import ChoiceOp, WeightedChoice

    method = plan.method
    op = next(m for m in method.supernet.modules()
              if isinstance(m, ChoiceOp) and any(p.requires_grad for p in m.parameters()))
    seen: list[torch.Tensor] = []
    hook = op.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        method.supernet(x, method.mixed_path(detach=True))
    hook.remove()
    inp = seen[0].requires_grad_(True)
    entry = WeightedChoice(tuple(range(len(op.ops))), torch.softmax(torch.zeros(len(op.ops), device=inp.device), 0))
    ones = [k for k in range(len(op.ops)) if k != op.zero_index]

    def mixed() -> None:
        op(inp, entry).sum().backward()

    def one_by_one() -> None:
        for k in ones:
            y = op.candidates[k](inp)
            op.mixed_norms[str(k)](y).sum().backward() if str(k) in op.mixed_norms else y.sum().backward()
    return mixed, one_by_one


def cases_for(method: str, space: str, overrides: list[str]) -> Iterator[StepCase]:
    """The cases of one method on one space (prepared as a run of that budget would be), both sides under the
    run's precision."""
    with prepared(method, space, overrides) as plan:
        for case in _cases(method, space, plan):
            yield under_autocast(case, plan.device, plan.cfg.precision)


def _cases(method: str, space: str, plan) -> Iterator[StepCase]:
    """The cases of `method` prepared by `plan` (fp32 callables)."""
    from oneshot_bench.training import optimizer_step

    ctx, m = plan.method.ctx, plan.method
    sync = _sync_for(ctx.device)
    x, y = _batch(ctx)
    arch = ctx.space.sample(random.Random(0))
    reference = standalone_step(ctx, arch, x, y)
    n = len(x)
    if method in SINGLE_PATH:
        path = m.path_of(arch)
        yield StepCase(method, space, "single-path weight step", "standalone step, same arch",
                       lambda: m.weight_step(path, x, y), reference, n, sync)
    if method == "darts":
        mixed, one_by_one = mixed_op_case(plan, x)
        yield StepCase(method, space, "mixed op (all candidates)", "sum of its candidates, one by one",
                       mixed, one_by_one, n, sync)
        yield StepCase(method, space, "mixed supernet weight step", "standalone step, one arch",
                       lambda: m.weight_step(m.mixed_path(detach=True), x, y), reference, n, sync)
    if method == "oneshot":
        yield StepCase(method, space, "one-shot step (path dropout)", "standalone step, one arch",
                       lambda: m.oneshot_step(x, y), reference, n, sync)
    if method in HYPERNETS:
        hp_plan = m.plan(arch)

        def generated() -> torch.Tensor:
            loss = F.cross_entropy(m.run(hp_plan, m.generate(hp_plan), x), y)
            return optimizer_step(loss, m.optimizer, m.hypernet, ctx.budget.grad_clip, m.scheduler)
        yield StepCase(method, space, "generated-weights step", "standalone step, same arch", generated,
                       reference, n, sync)
    if method in SCORED:
        yield StepCase(method, space, "scoring (BN recalibration)", "standalone recalibration + evaluation",
                       lambda: m.score([arch]), standalone_scoring(ctx, arch), n, sync)


def budget_overrides(budget: str, device: str, cifar: Optional[Path], precision: str = "fp32") -> list[str]:
    data = ["data=cifar10", f"data.root={cifar}"] if cifar is not None else []
    return [f"budget={budget}", f"device={device}", f"precision={precision}", *data]


def measure(spaces: list[str], methods: list[str], overrides: list[str], repeats: int,
            kinds: Optional[list[str]] = None) -> list[Ratio]:
    from methods.base import get_method
    from oneshot_bench.errors import ConfigError
    from search_spaces import get_space

    out = []
    for space in spaces:
        for method in methods:
            try:
                get_method(method).check_supports(get_space(space))
            except ConfigError as unsupported:
                print(f"({method} on {space}: not run, {unsupported})", flush=True)
                continue
            for case in cases_for(method, space, overrides):
                if kinds and not any(case.kind.startswith(k) for k in kinds):
                    continue
                out.append(paired_ratio(case, repeats))
                print(_fmt_row(out[-1].row()), flush=True)
    return out


def _fmt_row(row: dict[str, Any]) -> str:
    unit = "images/s" if "search images/s" in row else "archs/s"
    target = "" if row["target"] is None else f"{row['target']:.2f}"
    return (f"| {row['method']} | {row['space']} | {row['search step']} | {row['against']} | "
            f"{row['search ' + unit]:,.1f} {unit} | {row['reference ' + unit]:,.1f} {unit} | {row['ratio']:.2f} | "
            f"{target} {row['verdict']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["nb201", "darts_cell", "mbnet_chain"])
    parser.add_argument("--methods", nargs="+", default=[*SINGLE_PATH, *ALL_CANDIDATES, *HYPERNETS])
    parser.add_argument("--kinds", nargs="+", help="only steps whose kind starts so (e.g. 'mixed op')")
    parser.add_argument("--budget", default="cpu", help="the budget whose net size, resolution and batch are timed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="both sides under this autocast")
    parser.add_argument("--repeats", type=int, default=15, help="timed pairs per case (after 2 warm-up pairs)")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 python-batch folder (default: the embedded digits)")
    args = parser.parse_args(argv)
    if args.cifar is not None and not args.cifar.is_dir():
        print(f"error: --cifar {args.cifar}: no such folder (the CIFAR-10 python batches).", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"error: --repeats {args.repeats}: must be at least 1.", file=sys.stderr)
        return 2
    print(f"budget={args.budget}, device={args.device}, precision={args.precision}, threads={torch.get_num_threads()}, "
          f"median of {args.repeats} alternating pairs")
    print("| method | space | search step | against | search | reference | ratio | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    measure(args.spaces, args.methods, budget_overrides(args.budget, args.device, args.cifar, args.precision),
            args.repeats, args.kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
