"""The one formatter of numbers, durations and hyperparameter values, for tables and reports.

Every terminal table (``search.console``), the HTML report and the benchmarks format through
these functions, so a value reads the same everywhere.
"""

from __future__ import annotations

import math
import numbers


def number(value, digits: int = 3) -> str:
    """A measurement: ``digits`` decimals, or ``digits`` significant digits for a tiny or huge
    value; ``-`` for none or NaN, ``true``/``false`` for a bool."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        tiny_or_huge = value and (abs(value) < 1e-3 or abs(value) >= 1e4)
        return f"{value:.{digits}g}" if tiny_or_huge else f"{value:.{digits}f}"
    return str(value)


def fixed(value, digits: int = 1, unit: str = "") -> str:
    """A figure with ``digits`` decimals and a unit (``12.5 ms``); integers as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}{unit}"
    return f"{value:.{digits}f}{unit}"


def significant(value, digits: int = 3) -> str:
    """A measured amount by its significance: ``digits`` significant digits (``34.8``, ``3.30``,
    ``0.0123``), whole numbers once they have more digits than that (``1967``); ``-`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}" if decimals <= 6 else f"{value:.{digits}g}"


def short(value: float) -> str:
    """A short number: 3 significant digits, powers of ten as ``1e-4``."""
    if value == 0:
        return "0"
    exponent = math.log10(abs(value))
    if abs(exponent - round(exponent)) < 1e-9 and exponent <= -2:
        return f"{'-' if value < 0 else ''}1e{round(exponent)}"
    return f"{value:.3g}"


def param_value(value) -> str:
    """A hyperparameter's value: ``true``/``false``, a short number (:func:`short`), or text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return short(float(value))
    return str(value)


def metric(value) -> str:
    """An objective or a metric in a trials table: :func:`number` with 4 digits."""
    return number(value, 4)


def duration(seconds: float) -> str:
    """``42.0 s``, ``3.5 min``, ``1.2 h``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def held_values(held: dict) -> str:
    """The configuration an ablation held the other factors at: ``a=1, b=adam`` (sorted)."""
    return ", ".join(f"{k}={param_value(v)}" for k, v in sorted(held.items()))


def training_time(train_seconds: float | None, trial_seconds: float | None) -> str:
    """``5.3 min in fit, 5.9 min in trials``; ``not recorded`` for a study we did not run."""
    if train_seconds is None and trial_seconds is None:
        return "not recorded (no trial ran under search)"
    fit = "-" if train_seconds is None else duration(train_seconds)
    trials = "-" if trial_seconds is None else duration(trial_seconds)
    return f"{fit} in fit, {trials} in trials"


def limit(seconds: float | None) -> str:
    """A time limit: ``5 s``, or ``no limit``."""
    return "no limit" if seconds is None else f"{seconds:g} s"
