"""Conditions: data-level factors a space declares to be swept, not optimised.

A space module's ``CONDITIONS = {"classes": [3, 6, 10], "resize": [8, 16, 32]}`` names factors the
user wants explained across their values (the number of classes, the input resize): tuning them
for accuracy would drift to the easy ones. Trial ``n`` runs under combination ``n mod k`` of the
``k`` combinations (every condition gets the same share of the budget, in turn), the value given
to the space's ``hp`` as a ``--set`` value is, and the search samples every other factor; the
trial records its condition (``trial_attrs.CONDITION``) and ``search analyze`` reports each one.
``search start --sweep resize=8,16,32`` (stored with the study) sweeps a factor the same way
without editing the space: it adds a condition, or replaces the values of one the space declares.
A condition fixed with ``--set`` is not swept: every trial trains on that value.
"""

from __future__ import annotations

import itertools

from search.errors import SpaceError


def checked(conditions, path: str) -> dict[str, list]:
    """A space's ``CONDITIONS``: a dict of names to non-empty lists of values."""
    if conditions is None:
        return {}
    if not isinstance(conditions, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) and len(v) for k, v in conditions.items()):
        raise SpaceError(f"{path}: CONDITIONS must map hyperparameter names to non-empty lists of "
                         f"values, e.g. {{'classes': [3, 6, 10]}} (got {conditions!r})")
    return {k: list(v) for k, v in conditions.items()}


def of_study(space_conditions: dict[str, list], sweep: dict[str, list]) -> dict[str, list]:
    """The conditions a study runs under: its space's ``CONDITIONS``, with ``--sweep``'s added
    (or replacing a condition's values)."""
    return {**space_conditions, **sweep}


def combinations(conditions: dict[str, list]) -> list[dict]:
    """Every combination of the conditions' values, in a fixed order."""
    names = list(conditions)
    return [dict(zip(names, values)) for values in itertools.product(*conditions.values())]


def swept(conditions: dict[str, list], fixed: dict) -> dict[str, list]:
    """The conditions a study sweeps: those it does not fix for every trial with ``--set``."""
    return {name: values for name, values in conditions.items() if name not in fixed}


def condition_for(conditions: dict[str, list], number: int, fixed: dict | None = None) -> dict:
    """The condition trial ``number`` runs under (``{}`` without conditions): a combination of
    the swept ones, in turn; a condition fixed with ``--set`` is the same for every trial and is
    no part of it (the trial is not labelled with a value it did not train on)."""
    conditions = swept(conditions, fixed or {})
    if not conditions:
        return {}
    every = combinations(conditions)
    return dict(every[number % len(every)])
