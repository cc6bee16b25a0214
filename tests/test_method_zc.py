"""Zero-cost reference scorers (methods/zc.py): each proxy is deterministic, scores every arch independently of
the others, and agrees with NASLib's own scores of the same NB201 archs (an oracle nobody here wrote)."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from tests.conftest import SHARED_DATA

NASLIB_NB201 = SHARED_DATA / "naslib-zc-subsets" / "zc_nasbench201.json"
NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
# proxies both compute (NASLib's names are ours); params and flops are sizes, checked the same way
SHARED_PROXIES = ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "nwot", "fisher", "grasp")


def naslib_nb201_string(key: str) -> str:
    """NASLib's op-index tuple (EDGE_LIST order (1,2),(1,3),(1,4),(2,3),(2,4),(3,4)) as an NB201 string."""
    t = [NASLIB_OPS[int(v)] for v in key.strip("()").split(",")]
    return f"|{t[0]}~0|+|{t[1]}~0|{t[3]}~1|+|{t[2]}~0|{t[4]}~1|{t[5]}~2|"


def prepared_zc(smoke_config, *overrides: str):
    from evaluators.runner import plan_run, prepare

    plan = plan_run(smoke_config("method=zc", "method.params.proxy=all", *overrides))
    prepare(plan)
    return plan.method, plan.space


def test_every_proxy_is_finite_deterministic_and_independent_of_order(smoke_config):
    method, space = prepared_zc(smoke_config)
    import random

    archs = [space.sample(random.Random(i)) for i in range(4)]
    first = [method.scores(a) for a in archs]
    again = [method.scores(a) for a in reversed(archs)][::-1]
    assert first == again  # per-arch seeds and one fixed batch: what was scored before changes nothing
    assert set(first[0]) == set(SHARED_PROXIES)
    assert all(math.isfinite(v) for s in first for v in s.values())
    # proxies are not all the same ranking in disguise
    assert len({tuple(s[p] for s in first) for p in SHARED_PROXIES}) == len(SHARED_PROXIES)


def test_params_and_flops_are_the_measured_sizes(smoke_config):
    from oneshot_bench.measure import count_flops, count_params

    method, space = prepared_zc(smoke_config)
    arch = space.decode("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    net = space.build_standalone(arch, method.ctx.net)
    scores = method.scores(arch)
    assert scores["params"] == count_params(net)
    assert scores["flops"] == count_flops(net, method.ctx.data.in_channels, method.ctx.data.resolution)


def test_a_proxy_that_prefers_nothing_is_not_computed_on_a_trained_state(smoke_config):
    """zc does not train: train_epoch changes nothing, and a cell of only 'none' edges (no path from input to
    output) gets a worse synflow than a cell of convolutions."""
    method, space = prepared_zc(smoke_config)
    assert method.train_epoch(0) == {} and not method.trains
    empty = space.decode("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    convs = space.decode("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                         "nor_conv_3x3~2|")
    assert method.scores(convs)["synflow"] > method.scores(empty)["synflow"]


def test_proxy_all_records_every_proxy_and_one_proxy_records_only_itself(smoke_config):
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=zc", "method.params.proxy=all"), progress=False)
    assert set(record.ranking.extra_proxies) == set(SHARED_PROXIES) - {"synflow"}
    assert record.config["method"]["params"]["proxy"] == "all"
    single = run_benchmark(smoke_config("method=zc", "method.params.proxy=nwot"), progress=False)
    assert single.ranking.extra_proxies == {}
    assert record.ranking.archs == single.ranking.archs  # the same shared sample
    assert single.ranking.proxy == record.ranking.extra_proxies["nwot"].proxy
    assert "supernet_train" not in record.cost.phases and record.history == []  # nothing is trained


def test_an_unknown_proxy_names_the_choices(tmp_path, capsys):
    import run

    assert run.cli(["method=zc", "method.params.proxy=zen", f"execution.results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "method.params.proxy" in err and "synflow" in err and "Traceback" not in err


def test_repeats_average_draws_of_batch_and_initialisation(smoke_config):
    import random

    one, space = prepared_zc(smoke_config)
    three, _ = prepared_zc(smoke_config, "method.params.repeats=3")
    arch = space.sample(random.Random(3))
    single, mean = one.scores(arch), three.scores(arch)
    assert single["params"] == mean["params"] and single["flops"] == mean["flops"]
    assert single["grasp"] != mean["grasp"]
    # the first draw is the single-draw score: the mean of three includes it
    first_draw = three.batches[0]
    assert torch.equal(first_draw[0], one.batches[0][0])


# proxies whose single draws (one batch, one initialisation) disagree with each other: two of our draws of the same
# 40 archs agree at Spearman 0.90 (jacov) and 0.78 (grasp), NASLib's one draw is as noisy, so single draws cannot
# reach 0.9 against it; the mean of NOISY_REPEATS draws (method.params.repeats) is compared instead
NOISY = ("jacov", "grasp")
NOISY_REPEATS = 3


@pytest.mark.slow
def test_scores_agree_with_naslib_arch_by_arch(smoke_config, cifar_root):
    """NASLib's setting (32 px, C=16, N=5 cells per stage, one batch of 64 CIFAR-10 training images): the Spearman
    correlation between our score and NASLib's over the same NB201 archs is at least 0.9 for every proxy (for
    jacov, our mean of 3 draws); for grasp, whose single draws disagree too much for any score to reach 0.9
    against NASLib's one draw, our mean of 3 agrees with NASLib at least as well as two of our own draws agree.
    ONESHOT_ZC_ORACLE_ARCHS sets how many archs (default 40 of 725, in file order; the README gives all 725)."""
    from scipy import stats

    if not NASLIB_NB201.is_file():
        pytest.skip(f"NASLib's zero-cost file not found at {NASLIB_NB201}")
    records = json.loads(NASLIB_NB201.read_text())["cifar10"]
    n = int(os.environ.get("ONESHOT_ZC_ORACLE_ARCHS", "40"))
    keys = [k for k, r in records.items() if all(isinstance(r.get(p), dict) for p in SHARED_PROXIES)][:n]
    naslib_setting = ("data=cifar10", f"data.root={cifar_root}", "budget.resolution=32", "budget.net.channels=16",
                      "budget.net.cells_per_stage=5", "method.params.batch_size=64", "budget.max_train_images=5085")
    single, space = prepared_zc(smoke_config, *naslib_setting)
    repeated, _ = prepared_zc(smoke_config, *naslib_setting, f"method.params.repeats={NOISY_REPEATS}")
    from methods.zc import Proxy

    repeated.proxies = tuple(Proxy(p) for p in NOISY)
    ours = {p: [] for p in SHARED_PROXIES}
    ours_repeated = {p: [] for p in NOISY}
    for key in keys:
        arch = space.decode(naslib_nb201_string(key))
        for scores, out in ((single.scores(arch), ours), (repeated.scores(arch), ours_repeated)):
            for p in out:
                out[p].append(scores[p])

    def rho(values: dict[str, list[float]]) -> dict[str, float]:
        return {p: float(stats.spearmanr(v, [records[k][p]["score"] for k in keys]).statistic)
                for p, v in values.items()}

    one, mean = rho(ours), rho(ours_repeated)
    print(f"\nSpearman with NASLib over {len(keys)} NB201 archs, one draw: "
          + ", ".join(f"{p} {r:.3f}" for p, r in one.items())
          + f"; mean of {NOISY_REPEATS} draws: " + ", ".join(f"{p} {r:.3f}" for p, r in mean.items()))
    checked = {**{p: r for p, r in one.items() if p not in NOISY},
               **{p: r for p, r in mean.items() if p != "grasp"}}
    assert all(r >= 0.9 for r in checked.values()), checked
    # grasp: NASLib's score is one draw of a proxy whose draws disagree, so nothing can agree with it much better
    # than two independent draws agree with each other (with draw reliability r, the ceiling is about sqrt(r) < 0.9).
    # Our mean must reach that ceiling: an implementation that computed something else would fall far below it.
    independent, _ = prepared_zc(smoke_config, *naslib_setting, "seed=1")  # other batch, other initialisations
    independent.proxies = (Proxy("grasp"),)
    second = [independent.scores(space.decode(naslib_nb201_string(k)))["grasp"] for k in keys]
    draw_agreement = float(stats.spearmanr(ours["grasp"], second).statistic)
    print(f"grasp: two independent draws of ours agree at {draw_agreement:.3f}")
    assert mean["grasp"] >= draw_agreement, (mean["grasp"], draw_agreement)


def test_every_run_carries_the_free_references_of_its_sample(smoke_config):
    """params and FLOPs of the shared sample at the search network are in every record (counted once and cached),
    equal to the zc method's own params and flops proxies on the same sample."""
    from evaluators.runner import run_benchmark

    spos = run_benchmark(smoke_config("method=spos"), progress=False)
    zc = run_benchmark(smoke_config("method=zc", "method.params.proxy=all"), progress=False)
    assert spos.ranking.archs == zc.ranking.archs
    for name in ("params", "flops"):
        assert spos.ranking.references[name].proxy == zc.ranking.extra_proxies[name].proxy
        assert spos.ranking.references[name].kendall_tau == zc.ranking.extra_proxies[name].kendall_tau
    assert spos.ranking.best_reference()[0] in ("params", "flops")
