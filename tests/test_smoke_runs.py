"""One smoke-budget run per supported (method, space) pair, through the same entry the CLI uses."""
import math

import pytest

from evaluators.runner import run_benchmark
from methods import METHODS
from search_spaces import SPACES

PAIRS = [(m, s) for m in METHODS.names() for s in SPACES.names() if METHODS.get(m).supports_name(s)]
# smaller instances of spaces whose default is slow at the smoke budget (test_space_anytime runs the paper's size)
SMOKE_SPACE_PARAMS = {"anytime": ("space.params.nodes=[3,2,2]",)}


@pytest.mark.parametrize(("method", "space"), PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_smoke_run(smoke_config, method, space):
    extra = SMOKE_SPACE_PARAMS.get(space, ())
    record = run_benchmark(smoke_config(f"method={method}", f"space={space}", *extra), progress=False)
    s = record.summary
    assert -1.0 <= s.kendall_tau <= 1.0 and math.isfinite(s.kendall_tau)
    assert 0.0 <= s.final_test_acc <= 100.0
    assert s.params > 0 and s.flops > 0
    space_obj = SPACES.get(space)(**record.config["space"]["params"])
    assert space_obj.encode(space_obj.decode(record.found.arch)) == record.found.arch


def test_every_registered_pair_is_covered():
    assert {m for m, _ in PAIRS} == set(METHODS.names())


DARTS_METHODS = [m for m in METHODS.names() if METHODS.get(m).supports_name("darts_cell")]


@pytest.mark.parametrize("method", DARTS_METHODS)
def test_darts_cell_with_three_nodes_per_cell(smoke_config, method):
    """`space.params.nodes` (GHN's graph-size ablation) is another space: every darts_cell method runs on it, its
    found arch has 3 nodes per cell, and its run id differs from the 4-node run's."""
    record = run_benchmark(smoke_config(f"method={method}", "space=darts_cell", "space.params.nodes=3"),
                           progress=False)
    space = SPACES.get("darts_cell")(nodes=3)
    arch = space.decode(record.found.arch)
    assert len(arch) == 24 and record.config["space"]["params"] == {"nodes": 3}
    assert math.isfinite(record.summary.kendall_tau)
