"""truth=nb301: NASLib's 725 DARTS cells with NAS-Bench-301 surrogate predictions, read as darts_cell archs; every
method's own search stays inside a subset truth's cells."""
from __future__ import annotations

import ast
import json

import pytest

from evaluators.truth import resolve_truth
from evaluators.truth.base import DATA_DIR
from search_spaces.base import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("darts_cell")


@pytest.fixture(scope="module")
def truth(space):
    return resolve_truth(space, "nb301")


def test_every_record_is_one_distinct_cell_with_its_prediction(truth, space):
    records = json.loads((DATA_DIR / truth.file).read_text())["cifar10"]
    assert len(truth.table) == len(records) == 725 and len(truth.arch_pool()) == 725
    key, record = next(iter(records.items()))
    normal, reduce = ast.literal_eval(key)
    arch = space.decode(next(iter(truth.table)))
    # node 0 of the normal cell: NASLib's pairs 0 and 1 with darts_cell's op order, inputs sorted
    first = min(normal[:2])  # (input, NASLib op index) of the node's first input
    assert (arch[0], arch[1]) == first
    assert truth.accuracies([arch]) == [record["val_accuracy"]]
    assert 91.0 < min(truth.table.values()) and max(truth.table.values()) < 94.6


def test_surrogate_predictions_are_stated_and_the_network_is_nb301s(truth):
    described = truth.describe()
    assert described["surrogate"] is True and "surrogate" in described["metric"].lower()
    assert "PREDICTED" in described["metric"] and described["archs"] == 725
    net, side = truth.network()
    assert (net.channels, 3 * net.cells_per_stage + 2, side) == (32, 8, 32)


def test_params_agree_with_naslibs_counts(truth, space):
    """NASLib counted params on the same 8-cell, C=32 network; ours differ only by affine BatchNorms (< 2%)."""
    import torch

    from oneshot_bench.measure import count_params

    records = json.loads((DATA_DIR / truth.file).read_text())["cifar10"]
    net, _ = truth.network()
    for key in list(records)[:40]:
        arch = truth.arch_of(key)
        with torch.device("meta"):
            ours = count_params(space.build_standalone(arch, net)) / 1e6
        assert ours == pytest.approx(records[key]["params"]["score"], rel=0.02), key


def test_darts_cell_keeps_standalone_training_by_default(space):
    assert resolve_truth(space, "auto").name == "trained"


def test_a_changed_file_is_refused(tmp_path, monkeypatch, space):
    from evaluators.truth import nb301
    from oneshot_bench.errors import DataError

    copy = tmp_path / "naslib_zc_nasbench301.json"
    copy.write_text((DATA_DIR / "naslib_zc_nasbench301.json").read_text().replace("93.3", "93.4", 1))
    monkeypatch.setattr(nb301.NB301Truth, "path", property(lambda self: copy))
    with pytest.raises(DataError, match="sha256.*truth.verify=false"):
        nb301.NB301Truth(space).table  # noqa: B018


@pytest.mark.parametrize("method", ["darts", "enas", "spos", "greedynas", "oneshot", "ghn", "smash", "random", "zc"])
def test_every_method_searches_only_the_covered_cells(smoke_config, method):
    """The shared sample, each method's ranked candidates and its derived arch all lie in the 725 cells, so every
    accuracy of a run is a lookup (evolution projects onto the pool; DARTS and ENAS take the covered archs most
    likely under their learned distribution)."""
    from evaluators.runner import plan_run, prepare

    plan = plan_run(smoke_config(f"method={method}", "space=darts_cell", "truth=nb301", "budget.search_epochs=1",
                                 "budget.ranking_sample=4", "budget.candidates=5", "budget.evolution_population=4",
                                 "budget.evolution_generations=1", "budget.max_train_images=64"))
    run = prepare(plan)
    plan.method.train_epoch(0)
    pool = set(plan.truth.arch_pool())
    ranked = plan.method.ranked(5)
    assert ranked and {a for a, _ in ranked} <= pool
    assert plan.method.derive() in pool
    assert run.plan.truth.accuracies([ranked[0][0]])[0] > 90.0
