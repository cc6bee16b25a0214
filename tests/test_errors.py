"""Bad input ends in one clear message (a UserError the CLI prints without a traceback), never a deep traceback."""
import pytest

from evaluators.runner import run_benchmark
from methods.base import Method
from oneshot_bench.errors import ConfigError, DivergenceError
from search_spaces import get_space


class ChainOnly(Method):
    name = "chain_only"

    required_capabilities = Method.required_capabilities | {"supernet"}

    @classmethod
    def unsupported_reason(cls, space):
        reason = super().unsupported_reason(space)
        if reason is None and any(cp.node is not None for cp in space.choice_points):
            return "its idea needs a chain of layers, and this space's choice points feed shared cell nodes"
        return reason

    def build(self):
        pass

    def score(self, archs):
        return [0.0] * len(archs)

    def derive(self):
        return self.ctx.space.sample(self.rng)


def test_unsupported_space_names_the_method_the_reason_and_the_valid_spaces():
    with pytest.raises(ConfigError) as e:
        ChainOnly.check_supports(get_space("nb201"))
    msg = str(e.value)
    assert "chain_only" in msg and "nb201" in msg and "chain of layers" in msg and "mbnet_chain" in msg


def test_unknown_method_parameter_is_named(smoke_config):
    with pytest.raises(ConfigError, match="mutation_prop"):
        run_benchmark(smoke_config("method=spos", "space=mbnet_chain", "+method.params.mutation_prop=0.2"))


def test_unknown_truth_and_a_truth_that_does_not_cover_the_space(smoke_config):
    valid = "nas_bench_macro, nb101, nb201, nb301, trained"
    with pytest.raises(ConfigError, match=f"unknown truth 'oracle'. Valid choices: {valid}"):
        run_benchmark(smoke_config("method=spos", "space=mbnet_chain", "truth.name=oracle"))
    with pytest.raises(ConfigError, match="truth 'nb201' does not cover space 'darts_cell'.*auto, nb301, trained"):
        run_benchmark(smoke_config("method=spos", "space=darts_cell", "truth=nb201"))


def test_diverging_supernet_training_stops_with_advice_and_keeps_earlier_epochs(smoke_config):
    cfg = smoke_config("method=spos", "space=nb201", "budget.lr=1e12", "budget.grad_clip=1e30",
                       "budget.search_epochs=4")
    with pytest.raises(DivergenceError, match="learning rate"):
        run_benchmark(cfg, progress=False)
