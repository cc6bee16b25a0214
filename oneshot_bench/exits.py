"""Networks with several classifiers (anytime prediction): their training loss, per-exit accuracy and the anytime
area under the accuracy-FLOPs curve, the one number such an arch is ranked by.

A multi-exit network's forward(x) returns its last classifier's logits, as every network here does, and leaves
the logits of all its classifiers, in network order (the last included), in its `exit_logits` attribute. Code that
only wants a prediction keeps working; code that trains or scores anytime reads `exit_logits`.

Anytime metric (GHN, Zhang et al. 2019, Sec. 5.2, after MSDNet's anytime setting): a prediction is requested at a
budget b drawn uniformly from [0, B], and the network answers with the last classifier it has reached, i.e. whose
cumulative FLOPs (everything computed so far, earlier classifiers included) are within b; before its first exit it
can only guess (chance accuracy). The area under that step curve divided by B is the mean anytime accuracy, in
percent. B is the space's largest arch's full cost, the same for every arch of a space, so a net that answers early
and well scores high, and one whose last exit comes late pays for the budgets it cannot serve.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn


def exit_outputs(net: nn.Module, logits: torch.Tensor) -> list[torch.Tensor]:
    """Every classifier's logits of the forward pass that just returned `logits` (a single-exit net: just those)."""
    exits = getattr(net, "exit_logits", None)
    return list(exits) if exits else [logits]


def task_loss(net: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, averaged over the classifiers of a multi-exit net (MSDNet trains on the sum of its
    classifiers' losses; the mean keeps the learning rate's meaning whatever the number of exits)."""
    outs = exit_outputs(net, logits)
    if len(outs) == 1:
        return F.cross_entropy(outs[0], y)
    return torch.stack([F.cross_entropy(o, y) for o in outs]).mean()


@torch.no_grad()
def correct_per_exit(net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                     batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Whether each image is classified correctly by each classifier: a bool tensor, exits x images (one row for a
    single-exit net; its last row is what a paired test between two nets needs). `forward` runs `net` (directly, or
    with generated weights)."""
    rows: list[torch.Tensor] = []
    for x, y in batches:
        outs = exit_outputs(net, forward(x))
        rows.append(torch.stack([(o.argmax(1) == y) for o in outs]).cpu())
    return torch.cat(rows, dim=1) if rows else torch.zeros(1, 0, dtype=torch.bool)


def accuracies(correct: torch.Tensor) -> list[float]:
    """Per-exit accuracy in percent from `correct_per_exit`'s table."""
    return [100.0 * float(row.float().mean()) if row.numel() else 0.0 for row in correct]


def anytime_auc(exit_acc: Sequence[float], exit_flops: Sequence[float], max_flops: float, chance: float) -> float:
    """Mean anytime accuracy (percent) over budgets uniform in [0, max_flops] (see the module docstring)."""
    if len(exit_acc) != len(exit_flops) or not exit_acc:
        raise ValueError(f"{len(exit_acc)} exit accuracies for {len(exit_flops)} exit costs")
    if any(b < a for a, b in zip(exit_flops, exit_flops[1:], strict=False)):
        raise ValueError(f"exit costs must be cumulative (non-decreasing), got {list(exit_flops)}")
    if max_flops < exit_flops[-1]:
        raise ValueError(f"the budget range {max_flops:g} FLOPs ends before the last exit ({exit_flops[-1]:g})")
    area, level, at = 0.0, chance, 0.0
    for acc, flops in zip(exit_acc, exit_flops, strict=False):
        area += level * (flops - at)
        level, at = acc, flops
    area += level * (max_flops - at)
    return area / max_flops


def curve(exit_acc: Sequence[float], exit_flops: Sequence[float], max_flops: float,
          chance: float) -> dict[str, Any]:
    """A multi-exit result as it is recorded: each exit's cumulative FLOPs and accuracy, and the anytime AUC."""
    return {"exit_flops": [float(f) for f in exit_flops], "exit_acc": [float(a) for a in exit_acc],
            "anytime_auc": anytime_auc(exit_acc, exit_flops, max_flops, chance), "max_flops": float(max_flops),
            "chance_acc": float(chance)}


def chance_accuracy(num_classes: int) -> float:
    """A guess's expected accuracy (percent): what an anytime net scores before its first classifier."""
    return 100.0 / max(1, num_classes)


def ranking_value(space: Any, arch: tuple[int, ...], net_cfg: Any, resolution: int, result: dict[str, Any],
                  split: str) -> float:
    """What an arch is ranked by after a standalone training that returned `result` (train_standalone's dict):
    the split's accuracy, or for a multi-exit space its anytime AUC on that split."""
    if not getattr(space, "multi_exit", False):
        return float(result[f"{split}_acc"])
    return optional_curve(space, arch, net_cfg, resolution, result[f"{split}_exit_acc"])["anytime_auc"]


def optional_curve(space: Any, arch: tuple[int, ...], net_cfg: Any, resolution: int,
                   exit_acc: Optional[Sequence[float]]) -> Optional[dict[str, Any]]:
    """`curve` for a multi-exit space's result, None otherwise."""
    if not getattr(space, "multi_exit", False) or exit_acc is None:
        return None
    return curve(exit_acc, space.exit_flops(arch, net_cfg, resolution), space.max_flops(net_cfg, resolution),
                 chance_accuracy(net_cfg.num_classes))
