"""Which BatchNorms, re-estimated for each subnet, cost a supernet's ranking its signal (issue 28).

Trains one SPOS supernet on nb201 at budget=compare (about 1 minute on one core), then scores the run's 200-arch
sample once per variant, each re-estimating a different group of BNs on the calibration batches: the choice BNs
(inside the space's ChoiceOps), plus the stem BN (before the first choice point), the BNs between choice points
(nb201's reduction blocks) or the head BN (after the last). Groups are found by module order around the ChoiceOps,
never by names. Prints Kendall tau against the truth and against each cell's number of skip connections; the
figures are quoted in methods/bn_scoring.py.

    python benchmarks/bn_mode_diagnosis.py --data-root ../shared/data/cifar10-subset [--seed 0] [--out diag.json]

About 6 minutes on one core (the 20-batch variant is a third of it).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir

    import evaluators.runner as runner
    from evaluators.hydra_config import register_configs
    from methods.bn_scoring import batchnorms, choice_batchnorms
    from oneshot_bench.config import from_dictconfig
    from oneshot_bench.training import accuracy, recalibrate_bn
    from search_spaces.base import ChoiceOp

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="the CIFAR-10 folder (python batches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write every variant's scores and taus as JSON here")
    args = parser.parse_args(argv)
    if not Path(args.data_root).is_dir():
        print(f"error: --data-root {args.data_root}: no such folder; give the CIFAR-10 folder.", file=sys.stderr)
        return 2
    register_configs()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as results, initialize_config_dir(config_dir=str(REPO / "conf"),
                                                                         version_base="1.3"):
        cfg = from_dictconfig(compose("config", overrides=[
            "method=spos", "space=nb201", "data=cifar10", "truth=nb201", "budget=compare", f"seed={args.seed}",
            f"data.root={Path(args.data_root).resolve()}", f"execution.results_dir={results}",
            "execution.threads=1", "budget.ranking_every=0", "execution.resume=false"]))
        plan = runner.plan_run(cfg)
        run = runner.prepare(plan)
        start = time.perf_counter()
        runner.train(run, progress=False)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    method, space, budget = plan.method, plan.space, cfg.budget
    supernet = method.supernet
    sample, truth = run.sample_and_truth()
    every = batchnorms(supernet)
    choice_ids = {id(bn) for bn in choice_batchnorms(supernet)}
    modules = list(supernet.modules())
    at = {id(m): i for i, m in enumerate(modules)}
    choice_at = [i for i, m in enumerate(modules) if isinstance(m, ChoiceOp)]
    fixed = [bn for bn in every if id(bn) not in choice_ids]
    groups = {"choice": [bn for bn in every if id(bn) in choice_ids],
              "stem": [bn for bn in fixed if at[id(bn)] < choice_at[0]],
              "between": [bn for bn in fixed if choice_at[0] < at[id(bn)] < choice_at[-1]],
              "head": [bn for bn in fixed if at[id(bn)] > choice_at[-1]]}
    print("BNs: " + ", ".join(f"{k} {len(v)}" for k, v in groups.items()), flush=True)
    trained = [(bn, {k: v.clone() for k, v in bn.named_buffers()}) for bn in every]

    def restore() -> None:
        for bn, buffers in trained:
            for k, v in buffers.items():
                getattr(bn, k).copy_(v)
            bn.momentum = 0.1
            bn.eval()

    @torch.no_grad()
    def score(recalibrate: list, batch_stats: list = (), augment: bool | None = None, batches: int | None = None):
        out = []
        for arch in sample:
            path = method.path_of(arch)
            forward = lambda x, p=path: supernet(x, p)  # noqa: E731
            restore()
            supernet.eval()
            if recalibrate:  # just these BNs, the rest of the supernet in eval mode
                recalibrate_bn(supernet, forward, method.ctx.data.batches(
                    "train", budget.batch_size, torch.Generator().manual_seed(args.seed), augment=augment,
                    max_batches=batches or budget.bn_recalibration_batches), only=recalibrate)
            for bn in batch_stats:
                bn.train()
                bn.momentum = 0.0
            out.append(accuracy(forward, method.ctx.data.batches("val", budget.batch_size, method.generator,
                                                                 shuffle=False, augment=False,
                                                                 max_batches=budget.score_batches)))
        restore()
        return out

    skip = space.decisions[0].choices.index("skip_connect")
    skips = [sum(c == skip for c in arch) for arch in sample]
    c = groups["choice"]
    variants = {
        "running statistics everywhere": dict(recalibrate=[]),
        "choice BNs re-estimated (recalibrate_choice)": dict(recalibrate=c),
        "  + stem BN": dict(recalibrate=c + groups["stem"]),
        "  + head BN": dict(recalibrate=c + groups["head"]),
        "  + BNs between choice points": dict(recalibrate=c + groups["between"]),
        "every BN (recalibrate_all)": dict(recalibrate=every),
        "  calibration without augmentation": dict(recalibrate=every, augment=False),
        "  on 20 calibration batches": dict(recalibrate=every, batches=20),
        "choice BNs on batch statistics": dict(recalibrate=[], batch_stats=c),
        "every BN on batch statistics": dict(recalibrate=[], batch_stats=every),
    }
    results = {}
    for name, kw in variants.items():
        start = time.perf_counter()
        scores = score(**kw)
        tau, tau_skip = kendalltau(scores, truth).statistic, kendalltau(scores, skips).statistic
        results[name] = {"kendall_tau": tau, "tau_vs_skip_count": tau_skip, "scores": scores}
        print(f"{name:46s} tau {tau:+.3f}   vs #skip {tau_skip:+.3f}   ({time.perf_counter() - start:.0f} s)",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps({"seed": args.seed, "archs": [space.encode(a) for a in sample],
                                        "truth": truth, "skips": skips, "variants": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
