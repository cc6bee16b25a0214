"""How numbers read in the report: one function per kind of quantity, used by the tables and the templates."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

MISSING = "n/a"


def is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def is_huge(x: Any) -> bool:
    """Infinite, or too large to print digit by digit (a record's ranges exclude both; a report never crashes on
    them)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not abs(x) < 1e15


def as_float(x: Any) -> float:
    """A number as a float, an int past float's range as +-inf (float() would raise OverflowError)."""
    if isinstance(x, int) and not abs(x) < 1e308:
        return math.inf if x > 0 else -math.inf
    return float(x)


def huge(x: Any) -> str:
    """A huge or infinite number in three significant digits."""
    return f"{as_float(x):.3g}"


def num(x: Any, digits: int = 3) -> str:
    return MISSING if is_missing(x) else huge(x) if is_huge(x) else f"{x:.{digits}f}"


def significant(x: Any) -> str:
    """A value of unknown scale (a sweep objective): four significant digits."""
    return huge(x) if is_huge(x) else f"{x:.4g}" if isinstance(x, float) else str(x)


def seconds(x: Any) -> str:
    if is_missing(x):
        return MISSING
    if is_huge(x):
        return huge(x)
    return f"{x:.2f}" if x < 10 else f"{x:,.0f}" if x >= 1000 else f"{x:.1f}"


def days(x: Any) -> str:
    """Device-days: tiny on our budgets, so scientific notation below 0.01."""
    return MISSING if is_missing(x) else huge(x) if is_huge(x) else f"{x:.2e}" if abs(x) < 0.01 else f"{x:.2f}"


def count(x: Any) -> str:
    return MISSING if is_missing(x) else huge(x) if is_huge(x) else f"{int(x):,}"


def with_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    if is_missing(value):
        return MISSING
    if is_missing(low) or is_missing(high):
        return num(value, digits)
    return f"{num(value, digits)} [{num(low, digits)}, {num(high, digits)}]"


def mean_std(values: Sequence[float], fmt=num) -> str:
    """Several seeds: "mean ± std (n=k)", in the paper's style; one seed: the value alone."""
    vals = [as_float(v) for v in values if not is_missing(v)]
    if not vals:
        return MISSING
    if len(vals) == 1:
        return fmt(vals[0])
    mean = sum(vals) / len(vals)
    # d * d, not d ** 2: a huge value gives an infinite (printed) spread where float ** raises OverflowError
    std = math.sqrt(sum((v - mean) * (v - mean) for v in vals) / (len(vals) - 1))
    return f"{fmt(mean)} ± {fmt(std)} (n={len(vals)})"


def short_hash(x: Optional[str], n: int = 12) -> str:
    return MISSING if not x else str(x)[:n]
