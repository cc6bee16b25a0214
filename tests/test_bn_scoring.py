"""BN scoring modes (methods/bn_scoring.py): which BNs each mode touches, read from the space's declared choice
points; no side effect on the supernet or on training; recalibrate_all is the legacy protocol bit for bit."""
import random

import pytest
import torch
from test_spos import make_spos
from torch import nn

from methods.bn_scoring import batchnorms, bn_scoring, choice_batchnorms
from oneshot_bench.config import BnMode, ScoringConfig
from oneshot_bench.errors import ConfigError
from search_spaces import get_space
from search_spaces.base import ChoiceOp

MODES = list(BnMode)


def trained_spos(space: str = "nb201", steps: int = 5, **hparams):
    method, net = make_spos(space, **hparams)
    torch.manual_seed(0)
    for _ in range(steps):  # running statistics become a mixture over paths
        for x, y in method.train_batches():
            method.weight_step(method.path_of(method.sample_arch()), x, y)
    return method, net


def buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.named_buffers()}


@pytest.mark.parametrize("space", ["nb201", "darts_cell", "mbnet_chain"])
def test_choice_bns_are_exactly_those_inside_declared_choice_points(space):
    from oneshot_bench.config import NetConfig

    supernet = get_space(space).build_supernet(NetConfig(channels=8, cells_per_stage=1))
    inside = {id(bn) for choice in supernet.modules() if isinstance(choice, ChoiceOp) for bn in batchnorms(choice)}
    chosen = choice_batchnorms(supernet)
    assert {id(bn) for bn in chosen} == inside and len(chosen) == len(inside)
    fixed = [bn for bn in batchnorms(supernet) if id(bn) not in inside]
    assert chosen and fixed  # every space has both: stem/head BNs outside, candidate-op BNs inside


def test_a_supernet_without_declared_choice_points_is_refused():
    with pytest.raises(ValueError, match="no ChoiceOp"):
        choice_batchnorms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


@pytest.mark.parametrize("mode", MODES)
def test_scoring_leaves_the_supernet_exactly_as_it_was(mode):
    method, _ = trained_spos()
    before = buffers(method.supernet)
    method.supernet.train()
    arch = method.ctx.space.sample(random.Random(3))
    first = method.supernet_accuracy(arch, mode=mode)
    assert method.supernet.training and all(bn.training for bn in batchnorms(method.supernet))
    after = buffers(method.supernet)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert method.supernet_accuracy(arch, mode=mode) == first  # order-free: the second score is the first


def test_recalibrate_all_is_the_legacy_recalibration_bit_for_bit():
    """The protocol every record before scoring modes used: reset every BN, cumulative average over the fixed
    calibration batches with the whole supernet in training mode, then eval."""
    method, _ = trained_spos()
    b = method.ctx.budget
    arch = method.ctx.space.sample(random.Random(5))
    path = method.path_of(arch)
    val = lambda: method.ctx.data.batches("val", b.batch_size, method.generator, shuffle=False,  # noqa: E731
                                          augment=False, max_batches=b.score_batches)
    with torch.no_grad():
        with bn_scoring(method.supernet, BnMode.recalibrate_all, lambda x: method.supernet(x, path),
                        lambda: method.ctx.data.batches("train", b.batch_size, torch.Generator().manual_seed(0),
                                                        max_batches=b.bn_recalibration_batches)):
            new = torch.cat([method.supernet(x, path) for x, _ in val()])
        for bn in batchnorms(method.supernet):
            bn.reset_running_stats()
            bn.momentum = None
        method.supernet.train()
        for x, _ in method.ctx.data.batches("train", b.batch_size, torch.Generator().manual_seed(0),
                                            max_batches=b.bn_recalibration_batches):
            method.supernet(x, path)
        method.supernet.eval()
        legacy = torch.cat([method.supernet(x, path) for x, _ in val()])
    assert torch.equal(new, legacy)


def test_each_mode_sets_the_bns_it_names_and_only_those():
    method, _ = trained_spos()
    supernet = method.supernet
    trained = {id(bn): (bn.running_mean.clone(), bn.running_var.clone()) for bn in batchnorms(supernet)}
    choice = {id(bn) for bn in choice_batchnorms(supernet)}
    b = method.ctx.budget
    arch = method.ctx.space.sample(random.Random(1))
    path = method.path_of(arch)
    calibration = lambda: method.ctx.data.batches(  # noqa: E731
        "train", b.batch_size, torch.Generator().manual_seed(0), max_batches=b.bn_recalibration_batches)
    forward = lambda x: supernet(x, path)  # noqa: E731

    def changed(bn):
        mean, var = trained[id(bn)]
        return not (torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var))

    with bn_scoring(supernet, BnMode.recalibrate_choice, forward, calibration):
        assert not supernet.training and not any(bn.training for bn in batchnorms(supernet))
        assert not any(changed(bn) for bn in batchnorms(supernet) if id(bn) not in choice)  # fixed: trained stats
        assert sum(changed(bn) for bn in batchnorms(supernet) if id(bn) in choice) > 0  # the path's: re-estimated
    with bn_scoring(supernet, BnMode.recalibrate_all, forward, calibration):
        assert any(changed(bn) for bn in batchnorms(supernet) if id(bn) not in choice)  # the stem's too
    with bn_scoring(supernet, BnMode.batch_stats_choice, forward, calibration):
        assert all(bn.training == (id(bn) in choice) for bn in batchnorms(supernet))
        with torch.no_grad():
            supernet(next(iter(calibration()))[0], path)
        assert not any(changed(bn) for bn in batchnorms(supernet))  # batch statistics used, none tracked
    with bn_scoring(supernet, BnMode.running, forward, calibration):
        assert not any(bn.training for bn in batchnorms(supernet))


def test_modes_score_the_same_weights_differently():
    method, _ = trained_spos(steps=8)
    archs = [method.ctx.space.sample(random.Random(i)) for i in range(6)]
    scores = {mode: [method.supernet_accuracy(a, mode=mode) for a in archs] for mode in MODES}
    assert len({tuple(v) for v in scores.values()}) > 1


def test_training_is_bit_identical_whatever_the_scoring_mode():
    """Scoring between epochs (anytime points, derive) under any mode leaves the trajectory and the checkpoint's
    every tensor, running statistics included, as they are without scoring."""
    states = []
    for mode in (None, BnMode.recalibrate_all, BnMode.recalibrate_choice, BnMode.batch_stats_choice):
        method, _ = make_spos("nb201")
        torch.manual_seed(0)
        for epoch in range(3):
            for x, y in method.train_batches():
                method.weight_step(method.path_of(method.sample_arch()), x, y)
            if mode is not None:
                method.supernet_accuracy(method.ctx.space.sample(random.Random(epoch)), mode=mode)
        states.append(method.state_dict()["supernet"])
    for state in states[1:]:
        for k in states[0]:
            assert torch.equal(states[0][k], state[k]), k


def test_recalibrated_score_equals_the_standalone_net_with_those_statistics():
    """Under recalibrate_all, the supernet's score of a subnet is the standalone net's, loaded with the subnet's
    weights and the recalibrated statistics, on the same val batches."""
    from oneshot_bench.training import accuracy

    method, net = trained_spos()
    space, arch = method.ctx.space, method.ctx.space.sample(random.Random(7))
    b = method.ctx.budget
    val = lambda: method.ctx.data.batches("val", b.batch_size, method.generator, shuffle=False,  # noqa: E731
                                          augment=False, max_batches=b.score_batches)
    path = method.path_of(arch)
    score = method.supernet_accuracy(arch, mode=BnMode.recalibrate_all)
    calibration = lambda: method.ctx.data.batches(  # noqa: E731
        "train", b.batch_size, torch.Generator().manual_seed(0), max_batches=b.bn_recalibration_batches)
    with bn_scoring(method.supernet, BnMode.recalibrate_all, lambda x: method.supernet(x, path), calibration):
        standalone = space.build_standalone(arch, net)
        standalone.load_state_dict(method.supernet.subnet_state_dict(arch), strict=True)
        with torch.no_grad():
            logits = torch.cat([method.supernet(x, path) for x, _ in val()])
    standalone.eval()
    with torch.no_grad():
        assert accuracy(standalone, val()) == score
        torch.testing.assert_close(torch.cat([standalone(x) for x, _ in val()]), logits, rtol=1e-4, atol=1e-4)


def test_scoring_config_identity_names_only_what_differs_from_the_legacy_protocol():
    assert ScoringConfig(bn_mode=BnMode.recalibrate_all).identity() == {}
    assert ScoringConfig(bn_mode=BnMode.running).identity() == {"bn_mode": "running"}
    assert ScoringConfig().resolved(BnMode.running, "nb201").bn_mode == BnMode.running  # unset: the space's
    assert ScoringConfig(bn_mode=BnMode.recalibrate_all).resolved(BnMode.running, "nb201").bn_mode == \
        BnMode.recalibrate_all
    with pytest.raises(ConfigError, match="space nb201's default"):
        ScoringConfig(also_bn_modes=[BnMode.running]).resolved(BnMode.running, "nb201")
    assert ScoringConfig(bn_mode=BnMode.recalibrate_all, also_bn_modes=[BnMode.running]).identity() == {
        "also_bn_modes": ["running"]}
    with pytest.raises(ConfigError, match="scoring.also_bn_modes"):
        ScoringConfig(bn_mode=BnMode.running, also_bn_modes=[BnMode.running])


class _Affine(nn.Module):
    """A candidate whose features are a scaled and shifted copy of the input: off the scale the layers after the
    choice point were trained on."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return x * self.scale + self.shift


class _TinySupernet(nn.Module):
    """choice point (fits | off_scale) -> fixed BN -> classifier. The fixed BN holds the statistics training on the
    fitting path gave it (mean 0, var 1), and the classifier reads feature 0's sign."""

    def __init__(self) -> None:
        from search_spaces.base import Op

        super().__init__()
        self.choice = ChoiceOp(0, [Op("fits"), Op("off_scale")], [nn.Identity(), _Affine(0.2, 2.0)])
        self.fixed = nn.BatchNorm1d(2)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, x, path):
        return self.head(self.fixed(self.choice(x, path[0])))


def test_recalibrating_a_fixed_bn_after_a_choice_point_hides_a_subnet_the_shared_layers_cannot_read():
    """The mechanism of issue 28 (methods/bn_scoring.py): recalibrating a fixed BN downstream of a choice point
    re-normalises each subnet's features, so a subnet whose features sit far off what the shared layers after it
    were trained on scores like one that fits them. Only recalibrate_all does it; every mode that keeps the fixed
    BNs' trained statistics tells the two apart. On nb201 (budget=compare, SPOS seed 0) recalibrating only the
    reduction blocks' BNs besides the choice BNs took Kendall from 0.38 to 0.07, the head's BN to 0.15, the stem's
    changed nothing."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    y = (x[:, 0] > 0).long()
    net = _TinySupernet()
    calibration = lambda: [(x[:256], y[:256])]  # noqa: E731

    def score(mode, k):
        forward = lambda inputs: net(inputs, [k])  # noqa: E731
        with bn_scoring(net, mode, forward, calibration), torch.no_grad():
            return float((forward(x).argmax(1) == y).float().mean())

    fits, off = 0, 1
    for mode in (BnMode.recalibrate_choice, BnMode.batch_stats_choice, BnMode.running):
        assert score(mode, fits) == 1.0 and score(mode, off) < 0.6, mode  # off-scale: near chance
    # recalibrated on the same batch, both paths' features are re-normalised to the same values: a tie
    assert score(BnMode.recalibrate_all, fits) > 0.9
    assert abs(score(BnMode.recalibrate_all, fits) - score(BnMode.recalibrate_all, off)) <= 1 / len(x)


# ---- identity, records and reports --------------------------------------------------------------------------------

def test_a_runs_id_names_its_bn_mode_only_where_it_applies_and_differs_from_the_legacy_protocol(smoke_config):
    from evaluators.runner import plan_run

    def plan(*overrides):
        return plan_run(smoke_config(*overrides))

    legacy = plan("method=spos", "scoring.bn_mode=recalibrate_all")
    default = plan("method=spos")
    assert "scoring" not in legacy.identity  # every record before scoring modes keeps its id
    assert default.identity["scoring"] == {"bn_mode": "batch_stats_choice"}  # nb201's default
    assert plan("method=spos", "space=mbnet_chain").cfg.scoring.bn_mode == get_space("mbnet_chain").scoring_bn_mode
    assert default.run_id != legacy.run_id  # the new default never reuses a legacy record
    also = plan("method=spos", "scoring.also_bn_modes=[running]")
    assert also.identity["scoring"]["also_bn_modes"] == ["running"] and also.run_id != default.run_id
    # methods that do not score by supernet accuracy: the option is not part of what they measure
    assert plan("method=ghn").run_id == plan("method=ghn", "scoring.bn_mode=running",
                                             "scoring.also_bn_modes=[recalibrate_all]").run_id


def test_a_run_records_its_mode_and_scores_its_sample_under_the_other_modes_from_the_same_weights(smoke_config):
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=spos", "scoring.bn_mode=batch_stats_choice",
                                        "scoring.also_bn_modes=[recalibrate_all,running]"), progress=False)
    assert record.ranking.bn_mode == record.bn_mode == "batch_stats_choice"
    assert {"bn:recalibrate_all", "bn:running"} <= set(record.ranking.extra_proxies)
    # the same weights under the same mode give the same scores: the legacy run's ranking is this run's extra proxy
    legacy = run_benchmark(smoke_config("method=spos", "scoring.bn_mode=recalibrate_all"), progress=False)
    assert legacy.ranking.proxy == record.ranking.extra_proxies["bn:recalibrate_all"].proxy
    assert legacy.bn_mode == "recalibrate_all"


def test_the_bn_mode_table_pairs_modes_by_seed_and_judges_them_across_seeds(tmp_path, capsys):
    import numpy as np

    from evaluators.ranking import ranking_metrics
    from evaluators.record import ExtraProxy
    from reports.bn_modes import POOLED, build_mode_tables, main, to_markdown
    from reports.build import build_report
    from tests.test_reports import make_record, write_records

    records = []
    for seed in range(3):
        r = make_record("spos", seed, n=40, data="cifar10", budget="cpu")
        r.ranking.bn_mode = "batch_stats_choice"
        truth = np.asarray(r.ranking.truth)
        rng = np.random.default_rng(seed)
        for mode, noise in (("recalibrate_all", 30.0), ("recalibrate_choice", 2.0), ("running", 8.0)):
            proxy = list(truth + rng.normal(0, noise, len(truth)))
            r.ranking.extra_proxies[f"bn:{mode}"] = ExtraProxy(
                **ranking_metrics(proxy, list(truth), resamples=50, seed=seed), proxy=[float(p) for p in proxy])
        records.append(r)
    write_records(tmp_path / "results", records)
    [table] = build_mode_tables(records)
    [spos] = table.methods
    assert spos.method == "spos [own: batch_stats_choice]"
    assert spos.primary == "batch_stats_choice" and set(spos.taus) == {"recalibrate_all", "recalibrate_choice",
                                                                      "batch_stats_choice", "running"}
    assert all(len(v) == 3 for v in spos.taus.values())
    pair = next(v for v in table.verdicts if {v.a, v.b} == {"recalibrate_all", "recalibrate_choice"})
    assert pair.verdict.n == 3 and pair.verdict.tested
    assert pair.verdict.mean_difference == pytest.approx(np.mean(
        [spos.taus[pair.a][s].tau - spos.taus[pair.b][s].tau for s in range(3)]))
    assert all(v.method != POOLED for v in table.verdicts)  # one method: nothing to pool
    text = to_markdown([table])
    assert "| spos [own: batch_stats_choice] | 0 |" in text and "paired t-test over training seeds" in text
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "bn.md")]) == 0
    assert (tmp_path / "bn.md").read_text() == text
    assert main(["--results", str(tmp_path / "nowhere")]) == 2 and "no such folder" in capsys.readouterr().err
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert 'id="bn-modes"' in html and "spos (BN: batch_stats_choice)" in html


def test_paper_table_lines_never_average_runs_of_different_bn_modes(tmp_path):
    from reports.paper_tables import build_tables
    from reports.records import runs_frame
    from tests.test_reports import make_record

    records = []
    for mode in ("recalibrate_all", "batch_stats_choice"):
        for seed in range(2):
            r = make_record("spos", seed, space="nb201", data="cifar10", budget="compare", n=20)
            r.ranking.bn_mode = mode
            r.run_id += f"-{mode}"
            records.append(r)
    [table] = [t for t in build_tables(runs_frame(records), records=records) if t.id == "nb201_weight_sharing"]
    lines = [r.label for r in table.rows if r.origin == "measured" and r.label.startswith("SPOS")]
    assert len(lines) == 2 and any("BN: recalibrate_all" in x for x in lines) \
        and any("BN: batch_stats_choice" in x for x in lines)


def test_a_reproduction_lets_the_users_scoring_overrides_win_over_the_tables():
    from reports.paper_tables import table_spec
    from reports.reproduce import table_overrides

    table = table_spec("nb201_weight_sharing")
    assert table_overrides(table, []) == ["scoring.also_bn_modes=[recalibrate_all,recalibrate_choice,running]"]
    # the user's own mode leaves the extra modes (it would repeat itself there)
    assert table_overrides(table, ["scoring.bn_mode=recalibrate_all"]) == [
        "scoring.also_bn_modes=[recalibrate_choice,running]"]
    assert table_overrides(table, ["scoring.also_bn_modes=[]"]) == []  # the legacy ids: no extra modes


def test_recalibrating_without_calibration_batches_is_refused_before_any_work(smoke_config):
    from evaluators.runner import plan_run

    with pytest.raises(ConfigError, match="budget.bn_recalibration_batches=0"):
        plan_run(smoke_config("method=spos", "budget.bn_recalibration_batches=0", "scoring.bn_mode=recalibrate_all"))
    plan_run(smoke_config("method=spos", "budget.bn_recalibration_batches=0", "scoring.bn_mode=running"))


def test_scoring_restores_every_modules_own_train_flag():
    method, _ = trained_spos()
    supernet = method.supernet
    supernet.train()
    odd = next(m for m in supernet.modules()
               if not isinstance(m, nn.modules.batchnorm._BatchNorm) and m is not supernet)
    odd.eval()  # a module whose flag differs from the supernet's comes back as it was
    flags = {id(m): m.training for m in supernet.modules()}
    for mode in MODES:
        method.supernet_accuracy(method.ctx.space.sample(random.Random(2)), mode=mode)
        assert {id(m): m.training for m in supernet.modules()} == flags, mode
