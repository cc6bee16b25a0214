"""Ground-truth sources: one module each, registered with `@register_truth("<name>")` and chosen with
`truth=<name>` (conf/truth/<name>.yaml); `truth=auto` picks the space's default source."""
from .base import (
    TRUTHS,
    GroundTruth,
    TabularTruth,
    TruthContext,
    auto_truth_name,
    register_truth,
    resolve_truth,
    sha256_file,
)

__all__ = ["TRUTHS", "GroundTruth", "TabularTruth", "TruthContext", "auto_truth_name", "register_truth",
           "resolve_truth", "sha256_file"]
