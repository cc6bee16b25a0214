"""space=anytime (GHN's anytime prediction) and the multi-exit machinery: the arch strings, the networks and their
exits' costs, the anytime AUC, multi-exit training, the graph view GHN generates weights from, and a whole run with
the found arch beside the hand-designed baseline in the record and the report."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch.utils.flop_counter import FlopCounterMode

from evaluators.record import RunRecord
from evaluators.runner import run_benchmark
from methods import METHODS
from oneshot_bench.config import DataConfig, NetConfig, TrainConfig
from oneshot_bench.data import load_data
from oneshot_bench.errors import ArchStringError, ConfigError
from oneshot_bench.exits import anytime_auc, correct_per_exit, ranking_value, task_loss
from oneshot_bench.measure import count_flops, count_params
from oneshot_bench.training import train_standalone
from reports.build import build_report
from search_spaces import get_space

SMALL = {"nodes": [3, 2, 2]}
NET = NetConfig(channels=4, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def space():
    return get_space("anytime", SMALL)


def test_the_paper_layout_is_the_default():
    space = get_space("anytime")
    assert space.layout.nodes == (24, 16, 8) and space.identity_params() == {}
    assert len(space.decisions) == 2 * 48 - 1
    assert get_space("anytime", SMALL).identity_params() == {"nodes": [3, 2, 2]}


def test_strings_round_trip_and_read_as_documented(space):
    for seed in range(300):
        arch = space.sample(random.Random(seed))
        assert space.decode(space.encode(arch)) == arch
    # conv3x3 with an exit, sep3x3, skip | conv5x5 with an exit, skip | conv3x3, conv3x3 (final classifier)
    arch = space.decode("1e20|3e0|11")
    assert arch == (1, 1, 2, 0, 0, 0, 3, 1, 0, 0, 1, 0, 1)
    assert space.layout.exits(arch) == [0, 3, 6]
    assert space.encode(space.baseline_arch()) == "1e11e|1e1e|1e1"


@pytest.mark.parametrize(("text", "needle"), [
    ("1e20|3e0", "2 cells, not 3"), ("1e2|3e0|11", "cell 0 has 2 nodes, not 3"),
    ("1x20|3e0|11", "'x' where an op digit"), ("1e20|3e0|11e", "last node"), ("1e20|3e0|17", "'7'"),
])
def test_bad_strings_name_the_problem(space, text, needle):
    with pytest.raises(ArchStringError, match=needle) as e:
        space.decode(text)
    assert "e.g. '1e11e|1e1e|1e1'" in str(e.value)


@pytest.mark.parametrize("nodes", [[], [0, 2], [2, 65], "abc", [1.5], [True, 2], [1] * 6])
def test_bad_node_counts_are_config_errors(nodes):
    with pytest.raises(ConfigError, match=r"space.params.nodes=.*not allowed.*\[24,16,8\]"):
        get_space("anytime", {"nodes": nodes})


def test_a_net_answers_at_every_exit_and_costs_add_up(space):
    torch.manual_seed(0)
    x = torch.randn(3, 1, 16, 16)
    largest = space.largest_arch()
    max_flops = space.max_flops(NET, 16)
    assert max_flops == count_flops(space.build_standalone(largest, NET), 1, 16)
    for seed in range(12):
        arch = space.sample(random.Random(seed))
        net = space.build_standalone(arch, NET).eval()
        logits = net(x)
        exits = space.layout.exits(arch)
        assert len(net.exit_logits) == len(exits) and torch.equal(logits, net.exit_logits[-1])
        flops = space.exit_flops(arch, NET, 16)
        assert flops == counted_at_each_exit(net, x[:1]), space.encode(arch)  # sums of pieces = the whole net's
        assert len(flops) == len(exits) and all(a < b for a, b in zip(flops, flops[1:], strict=False))
        assert flops[-1] == count_flops(net, 1, 16) <= max_flops  # the last exit has run everything


def counted_at_each_exit(net, x):
    """The FLOP counter's running total when each classifier has answered, on the whole network."""
    marks = []
    with FlopCounterMode(display=False) as counter:
        hooks = [head.register_forward_hook(lambda *_: marks.append(float(counter.get_total_flops())))
                 for head in net.exits.values()]
        with torch.no_grad():
            net(x)
    for hook in hooks:
        hook.remove()
    return marks


def test_anytime_auc_integrates_the_step_curve():
    # chance 10 on [0, 1), 50 on [1, 3), 80 on [3, 4]: (10 + 100 + 80) / 4
    assert anytime_auc([50.0, 80.0], [1.0, 3.0], 4.0, 10.0) == pytest.approx(47.5)
    # answering the same accuracies earlier is worth more; a curve above another is worth more
    assert anytime_auc([50.0, 80.0], [0.5, 2.0], 4.0, 10.0) > 47.5
    assert anytime_auc([55.0, 85.0], [1.0, 3.0], 4.0, 10.0) > 47.5
    with pytest.raises(ValueError, match="cumulative"):
        anytime_auc([50.0, 80.0], [3.0, 1.0], 4.0, 10.0)
    with pytest.raises(ValueError, match="ends before the last exit"):
        anytime_auc([50.0], [5.0], 4.0, 10.0)


def test_multi_exit_loss_is_the_mean_over_classifiers(space):
    torch.manual_seed(1)
    net = space.build_standalone(space.decode("1e20|3e0|11"), NET)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    logits = net(x)
    expected = sum(F.cross_entropy(o, y) for o in net.exit_logits) / 3
    assert torch.allclose(task_loss(net, logits, y), expected)
    single = torch.nn.Linear(5, 4)
    z = single(torch.randn(4, 5))
    assert torch.allclose(task_loss(single, z, y), F.cross_entropy(z, y))


def test_training_reports_every_exit_and_ranks_by_the_auc(space):
    data = load_data(DataConfig(), resolution=8, seed=0)
    arch = space.decode("1e20|3e0|11")
    net_cfg = NetConfig(channels=4, num_classes=data.num_classes, in_channels=data.in_channels)
    torch.manual_seed(0)
    net = space.build_standalone(arch, net_cfg)
    out = train_standalone(net, data, TrainConfig(epochs=2, batch_size=64, lr=0.05), torch.device("cpu"), 0,
                           progress=False)
    assert len(out["test_exit_acc"]) == 3 and out["test_exit_acc"][-1] == pytest.approx(out["test_acc"])
    assert out["test_exit_acc"] != [out["test_acc"]] * 3  # each classifier answers on its own
    value = ranking_value(space, arch, net_cfg, data.resolution, out, "test")
    assert value == pytest.approx(anytime_auc(out["test_exit_acc"], space.exit_flops(arch, net_cfg, data.resolution),
                                              space.max_flops(net_cfg, data.resolution), 10.0))
    correct = correct_per_exit(net, net, data.batches("test", 256, torch.Generator(), shuffle=False, augment=False))
    assert correct.shape == (3, len(data.test))


def test_the_graph_view_owns_every_weight_and_keeps_its_modules(space):
    for text in ("1e20|3e0|11", "000|00|00", "2e2e2|0e2e|00"):
        arch = space.decode(text)
        graph = space.to_graph(arch, NET)
        net = space.build_standalone(arch, NET)
        owned = {m for m in graph.node_modules if m is not None}
        names = dict(net.named_modules())
        assert sum(count_params(names[m]) for m in owned) == count_params(net), text
        assert graph.scopes() == ["cell0", "cell1", "cell2", "head"], text  # stacked GHN needs the same modules
        assert graph.node_types.count("output") == len(space.layout.exits(arch))
        assert set(graph.node_types) <= set(space.graph_node_types)
    graph = space.to_graph(space.decode("1e20|3e0|11"), NET)
    op_of_node0, exit_of_node0 = 0, 1  # decisions that shape node 0's conv and its classifier
    assert (op_of_node0,) in graph.node_decisions and (exit_of_node0,) in graph.node_decisions


def test_supernet_methods_say_why_they_cannot_search_it(space):
    for name in METHODS.names():
        reason = METHODS.get(name).unsupported_reason(space)
        if name in ("ghn", "smash", "random", "zc"):
            assert reason is None, name
        else:
            assert "supernet" in reason and "there is no single path that runs a given set of exits" in reason


def test_ghn_searches_it_and_the_record_and_report_hold_both_curves(smoke_config, tmp_path):
    record = run_benchmark(smoke_config("method=ghn", "space=anytime", "space.params.nodes=[3,2,2]"), progress=False)
    found, base = record.found, record.found.anytime_baseline
    curve = found.finalists[0].anytime
    space = get_space("anytime", SMALL)
    arch = space.decode(found.arch)
    assert len(curve["exit_acc"]) == len(space.layout.exits(arch)) and curve["exit_acc"][-1] == found.final_test_acc
    assert base["arch"] == space.encode(space.baseline_arch()) and len(base["anytime"]["exit_acc"]) == 6
    assert base["anytime"]["max_flops"] == curve["max_flops"]
    assert "anytime AUC" in record.hashes.truth["metric"]
    assert record.summary.final_anytime_auc == curve["anytime_auc"]  # what a sweep can optimise
    assert all(0.0 <= v <= 100.0 for v in record.ranking.truth)
    again = RunRecord.from_dict(record.to_dict())
    assert again.found.anytime_baseline == base
    out = build_report(tmp_path / "results", tmp_path / "report")
    html = out.read_text()
    assert "Anytime prediction: accuracy at each classifier against FLOPs" in html
    assert f"Baseline: seed 0: AUC {base['anytime']['anytime_auc']:.2f}" in html
    assert (f"(last classifier); anytime AUC {curve['anytime_auc']:.2f}, hand-designed baseline "
            f"{base['anytime']['anytime_auc']:.2f}") in html  # the method table's final-accuracy cell


def test_the_paper_size_space_runs_from_the_command_line(tmp_path):
    """The README's command on the paper's 24/16/8 cells, as a new user runs it."""
    proc = subprocess.run([sys.executable, "run.py", "method=ghn", "space=anytime", "budget=smoke",
                           f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "250"})  # the summary's rows unwrapped
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "anytime AUC (%)" in proc.stdout and "hand-designed baseline" in proc.stdout


def test_a_supernet_method_on_it_is_one_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "run.py", "method=spos", "space=anytime", "budget=smoke",
                           f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not support space 'anytime'" in proc.stderr and "supernet" in proc.stderr
