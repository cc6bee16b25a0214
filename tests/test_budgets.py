"""Named budgets read outside Hydra (oneshot_bench/budgets.py) have the values a run composes, and the plumbing-check
threshold is budget=smoke's sizes."""
from __future__ import annotations

import dataclasses

import pytest

from oneshot_bench.budgets import budget_names, load_budget, plumbing_sizes
from oneshot_bench.errors import ConfigError


@pytest.mark.parametrize("name", budget_names())
def test_a_named_budget_has_the_values_hydra_composes(smoke_config, name):
    assert load_budget(name) == smoke_config(f"budget={name}").budget  # paper_darts: paper's, then its own


def test_the_plumbing_threshold_is_budget_smokes_sizes():
    smoke = dataclasses.asdict(load_budget("smoke"))
    assert plumbing_sizes(smoke) == [
        "resolution=8 (at or below budget=smoke's 8)", "max_train_images=256 (at or below budget=smoke's 256)",
        "search_epochs=2 (at or below budget=smoke's 2)", "ranking_sample=12 (at or below budget=smoke's 12)"]
    compare = dataclasses.asdict(load_budget("compare"))
    assert plumbing_sizes(compare) == []
    # one size is enough; a null image cap is all images, never at or below
    assert plumbing_sizes({**compare, "search_epochs": 1}) == ["search_epochs=1 (at or below budget=smoke's 2)"]
    assert plumbing_sizes({**smoke, "max_train_images": None, "resolution": 9, "search_epochs": 3,
                           "ranking_sample": 13}) == []


def test_an_unknown_budget_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown budget '\.\./paper'\. Valid: compare, cpu, paper"):
        load_budget("../paper")
