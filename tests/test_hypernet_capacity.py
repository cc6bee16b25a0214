"""Hypernetworks at any width: every generated value of GHN and SMASH has its own learned position code, at the
papers' widths of every space (paper budget's search nets), and a row beyond the code's capacity is refused."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from methods import SearchContext, get_method
from methods._hypernet import ChunkDecoder
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from oneshot_bench.errors import ConfigError
from search_spaces.base import SPACES, get_space

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "budget" / "paper.yaml").read_text())


def paper_net(space: str) -> NetConfig:
    net = {**PAPER["net"], **(PAPER.get("net_by_space") or {}).get(space, {})}
    return NetConfig(channels=net["channels"], cells_per_stage=net["cells_per_stage"], num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(), resolution=8, seed=0, max_train_images=16, max_val_images=16)


@pytest.mark.parametrize("method_name", ["ghn", "smash"])
@pytest.mark.parametrize("space_name", sorted(SPACES.names()))
def test_every_generated_value_has_a_learned_code_at_paper_width(data, method_name, space_name):
    space, net = get_space(space_name), paper_net(space_name)
    # SMASH generating every weight: its widest rows (the default generates only the 1x1 convs)
    method = get_method(method_name, {"generate": "all"} if method_name == "smash" else {})
    budget = BudgetConfig(batch_size=16, search_epochs=1, score_batches=1, candidates=2)
    method.setup(SearchContext(space, data, budget, torch.device("cpu"), 0, net, net, data.resolution))
    decoder: ChunkDecoder = method.hypernet.decoder
    rng = random.Random(0)
    longest = 0
    for _ in range(3):
        layout = method.plan(space.sample(rng)).extra["layout"]
        # within each row, the chunk indices' (low, high) digits are distinct: a learned code per chunk
        digits = layout.pos_high * decoder.code_radix + layout.pos_low
        for r in range(len(layout.counts)):
            in_row = digits[layout.row == r]
            assert torch.equal(in_row, torch.arange(len(in_row))), (space_name, r)
            longest = max(longest, len(in_row))
        assert int(layout.pos_high.max()) < decoder.code_radix
    if space_name == "mbnet_chain" and method_name == "smash":
        # the case that motivated the two-digit code: rows past the old single table of 1,024 learned codes
        assert longest > 1024


def test_a_row_beyond_the_learned_code_is_refused_naming_the_key():
    decoder = ChunkDecoder(cond_dim=4, hidden=8, chunk_size=4, pos_dim=4, code_radix=3)
    decoder.layout([9 * 4], torch.device("cpu"))  # 9 chunks: exactly the capacity
    with pytest.raises(ConfigError, match=r"code_radix=3.*10 chunks.*at least 4"):
        decoder.layout([9 * 4 + 1], torch.device("cpu"))


def test_chunks_past_the_radix_get_codes_that_differ_from_their_low_digit():
    """Chunk j and chunk j + radix share the low digit; the high digit tells them apart (the old single table
    gave every chunk past its size the same zero code)."""
    torch.manual_seed(0)
    decoder = ChunkDecoder(cond_dim=2, hidden=8, chunk_size=1, pos_dim=2, layers=1, code_radix=4)
    decoder.pos.weight.data.zero_()  # leave only the learned code to tell chunks apart
    values = decoder(torch.ones(1, 2), decoder.layout([16], torch.device("cpu")))
    assert len(set(values.tolist())) == 16
