import pytest

from evaluators.runner import worst_decile
from evaluators.truth import TRUTHS, resolve_truth, sha256_file
from evaluators.truth.base import DATA_DIR
from search_spaces import get_space

BEST_NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_files_are_the_documented_ones():
    assert sha256_file(DATA_DIR / "nb201_nats_tss_test200.csv") == (
        "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e")
    assert sha256_file(DATA_DIR / "nas_bench_macro_cifar10.json") == (
        "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297")


def test_auto_picks_each_space_default_source():
    assert resolve_truth(get_space("nb201"), "auto").name == "nb201"
    assert resolve_truth(get_space("mbnet_chain"), "auto").name == "nas_bench_macro"
    assert resolve_truth(get_space("darts_cell"), "auto").name == "trained"
    assert resolve_truth(get_space("nb201"), "auto").identity()["params"] == {"dataset": "cifar10"}


def test_each_table_loads_the_number_of_archs_its_source_declares(monkeypatch):
    from oneshot_bench.errors import DataError

    for name in TRUTHS.names():
        cls = TRUTHS.get(name)
        if cls.kind == "tabular":
            space = get_space(next(iter(cls.spaces)))
            assert len(cls(space).table) == cls.declared_archs
    nb201 = TRUTHS.get("nb201")
    monkeypatch.setattr(nb201, "declared_archs", 15626)
    with pytest.raises(DataError, match="covers 15625 archs, not the 15626"):
        nb201(get_space("nb201")).table  # noqa: B018


def test_nb201_exact_lookups():
    space = get_space("nb201")
    truth = resolve_truth(space, "nb201", {"dataset": "cifar10"})
    assert round(truth.accuracies([space.decode(BEST_NB201)])[0], 2) == 94.37
    table = truth.all_accuracies()
    assert len(table) == 15625
    assert max(table, key=table.get) == BEST_NB201
    assert round(min(table.values()), 2) == 10.0
    nb201 = lambda dataset: resolve_truth(space, "nb201", {"dataset": dataset})  # noqa: E731
    assert round(max(nb201("cifar100").all_accuracies().values()), 2) == 73.51
    assert round(max(nb201("imagenet16-120").all_accuracies().values()), 2) == 47.31
    # the worst decile bound is the 10% quantile over all 15,625 cells
    assert worst_decile(truth) == pytest.approx(sorted(table.values())[1562], abs=0.5)


def test_macro_exact_lookups():
    space = get_space("mbnet_chain")
    truth = resolve_truth(space, "nas_bench_macro")
    assert truth.accuracies([space.decode("02012100")])[0] == pytest.approx(89.197, abs=1e-3)
    assert truth.accuracies([space.decode("22212220")])[0] == pytest.approx(93.13, abs=0.01)
    assert truth.accuracies([space.decode("00000000")])[0] == pytest.approx(45.36, abs=0.01)
    assert len(truth.all_accuracies()) == 6561


def test_trained_truth_is_cached_and_reused(tmp_path, monkeypatch):
    import random

    import torch

    import evaluators.truth.trained as trained
    from evaluators.truth import TruthContext
    from oneshot_bench.config import DataConfig, NetConfig, TrainConfig
    from oneshot_bench.data import load_data

    space = get_space("darts_cell")
    data = load_data(DataConfig(), resolution=8, seed=0, max_train_images=64, max_val_images=32)
    net = NetConfig(channels=4, cells_per_stage=1, num_classes=10, in_channels=1)
    train = TrainConfig(epochs=1, batch_size=32)
    def make():
        truth = resolve_truth(space, "trained")
        truth.bind(TruthContext(data, net, train, train, torch.device("cpu"), 0, tmp_path))
        return truth

    archs = [space.sample(random.Random(i)) for i in range(2)]
    first = make().accuracies(archs)
    assert len(list((tmp_path / "darts_cell").glob("*.json"))) == 2

    def no_training(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(trained, "train_standalone", no_training)
    assert make().accuracies(archs) == first  # a second method reuses the same numbers without training
