"""Named budgets (conf/budget/<name>.yaml) resolved to their values without Hydra, for code that compares a run's
budget with a named one: the plumbing-check threshold (budget=smoke's sizes) and a paper table's reference budget.

A budget file holds overrides of BudgetConfig's defaults, and may start from another budget
(`defaults: [paper, _self_]`); `load_budget` merges them as Hydra composes `budget=<name>` (a test checks that both
give the same values), so a budget's values live in its file and nowhere else.
"""
from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .config import BudgetConfig
from .errors import ConfigError

BUDGETS = Path(__file__).resolve().parents[1] / "conf" / "budget"

# A run whose budget is at or below this budget's size in any of these fields shows that the code runs, whatever
# the budget is named: seconds of training on a few tiny images rank nothing (README "What is measured").
PLUMBING_BUDGET = "smoke"
PLUMBING_FIELDS = ("resolution", "max_train_images", "search_epochs", "ranking_sample")


def budget_names() -> list[str]:
    """The budgets `budget=<name>` can select: the files of conf/budget/."""
    return sorted(p.stem for p in BUDGETS.glob("*.yaml"))


def load_budget(name: str) -> BudgetConfig:
    """conf/budget/<name>.yaml merged onto BudgetConfig's defaults (a copy: callers may change it)."""
    return copy.deepcopy(_resolved(name))


@cache
def _resolved(name: str) -> BudgetConfig:
    from omegaconf import OmegaConf

    budget = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BudgetConfig), *_layers(name, ())))
    assert isinstance(budget, BudgetConfig)
    return budget


def _layers(name: str, inside: tuple[str, ...]) -> list[dict[str, Any]]:
    """The budget's file and the budgets it starts from, in merge order (Hydra's: `_self_` where the defaults list
    puts it, last when it is not listed)."""
    if name not in budget_names():  # names from data files never resolve as paths
        raise ConfigError(f"unknown budget {name!r}. Valid: {', '.join(budget_names())} (conf/budget/).")
    if name in inside:
        raise ConfigError(f"conf/budget/{name}.yaml: its defaults list includes itself ({' -> '.join(inside)}).")
    spec = yaml.safe_load((BUDGETS / f"{name}.yaml").read_text()) or {}
    defaults = spec.pop("defaults", None) or []
    layers = []
    for entry in defaults if "_self_" in defaults else [*defaults, "_self_"]:
        if entry == "_self_":
            layers.append(spec)
        elif isinstance(entry, str):
            layers += _layers(entry, (*inside, name))
        else:
            raise ConfigError(f"conf/budget/{name}.yaml: defaults entry {entry!r} is not read here; list other "
                              f"budgets by name (and _self_).")
    return layers


def plumbing_sizes(budget: dict[str, Any]) -> list[str]:
    """The sizes of a resolved budget (a record's `config.budget`) at or below budget=smoke's, each in words
    ("search_epochs=2 (at or below budget=smoke's 2)"); empty for a budget that measures. A null image cap means all
    images, which is never at or below a number."""
    threshold = _resolved(PLUMBING_BUDGET)
    out = []
    for key in PLUMBING_FIELDS:
        value, limit = budget.get(key), getattr(threshold, key)
        if value is not None and limit is not None and value <= limit:
            out.append(f"{key}={value} (at or below budget={PLUMBING_BUDGET}'s {limit})")
    return out
