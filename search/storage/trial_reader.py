"""Read every trial of a study at once, several times faster than Optuna's own reader.

``RDBStorage.get_all_trials`` loads trials through the SQLAlchemy ORM (one object per trial, per
parameter, per attribute): on a 10,000-trial study with learning curves in its user attributes,
that is 10 to 17 s on a 2-core machine, most of a ``search analyze`` run. This reads the same rows
with SQLAlchemy Core (Optuna's own table definitions and column types) and builds the same
``FrozenTrial`` objects with Optuna's own converters, in a few seconds. Only for reading: every
write still goes through Optuna.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict

import optuna
import sqlalchemy as sa
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial

from search.storage.retry import retried

_Value = models.TrialValueModel
_Intermediate = models.TrialIntermediateValueModel


@functools.lru_cache(maxsize=4096)
def _distribution(distribution_json: str):
    return distributions.json_to_distribution(distribution_json)


def _by_trial(conn, table, trial_ids, *columns):
    rows = defaultdict(list)
    query = sa.select(table.c.trial_id, *(table.c[c] for c in columns)).where(
        table.c.trial_id.in_(trial_ids))
    for row in conn.execute(query):
        rows[row[0]].append(row[1:])
    return rows


@retried
def read_trials(storage: optuna.storages.RDBStorage, study_id: int) -> list[FrozenTrial]:
    """Every trial of the study, as ``storage.get_all_trials(study_id)`` returns them."""
    trials_t = models.TrialModel.__table__
    with storage.engine.connect() as conn:
        trial_rows = conn.execute(
            sa.select(trials_t.c.trial_id, trials_t.c.number, trials_t.c.state,
                      trials_t.c.datetime_start, trials_t.c.datetime_complete)
            .where(trials_t.c.study_id == study_id).order_by(trials_t.c.trial_id)).all()
        ids = sa.select(trials_t.c.trial_id).where(trials_t.c.study_id == study_id).scalar_subquery()
        values = _by_trial(conn, _Value.__table__, ids, "objective", "value", "value_type")
        params = _by_trial(conn, models.TrialParamModel.__table__, ids, "param_id", "param_name",
                           "param_value", "distribution_json")
        user = _by_trial(conn, models.TrialUserAttributeModel.__table__, ids, "key", "value_json")
        system = _by_trial(conn, models.TrialSystemAttributeModel.__table__, ids, "key", "value_json")
        steps = _by_trial(conn, _Intermediate.__table__, ids, "step", "intermediate_value",
                          "intermediate_value_type")
    trials = []
    for trial_id, number, state, start, complete in trial_rows:
        objectives = values.get(trial_id)
        trial_values = None
        if objectives:
            trial_values = [0.0] * len(objectives)
            for objective, value, value_type in objectives:
                trial_values[objective] = _Value.stored_repr_to_value(value, value_type)
        trial_params = sorted(params.get(trial_id, ()))
        trials.append(FrozenTrial(
            number=number, state=state, value=None, values=trial_values,
            datetime_start=start, datetime_complete=complete,
            params={name: _distribution(dist).to_external_repr(value)
                    for _, name, value, dist in trial_params},
            distributions={name: _distribution(dist) for _, name, _, dist in trial_params},
            user_attrs={key: json.loads(raw) for key, raw in user.get(trial_id, ())},
            system_attrs={key: json.loads(raw) for key, raw in system.get(trial_id, ())},
            intermediate_values={
                step: _Intermediate.stored_repr_to_intermediate_value(value, value_type)
                for step, value, value_type in steps.get(trial_id, ())},
            trial_id=trial_id,
        ))
    return trials
