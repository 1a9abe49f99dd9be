"""User attributes written on a trial after it finished (test metrics measured later).

Optuna treats a finished trial as immutable: ``set_trial_user_attr`` raises
``UpdateFinishedTrialError``. A measurement taken after the search (the test split's metrics of a
top trial) still belongs on that trial, where ``optuna.load_study`` and optuna-dashboard show it,
so it is written into Optuna's ``trial_user_attributes`` table directly (its schema is unchanged
since Optuna 3.2), JSON-encoded as Optuna encodes user attributes. A process that already read
the finished trial through Optuna's cached storage sees the new value after it reloads the study.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from search.storage.retry import retried

_user_attrs = sa.table(
    "trial_user_attributes",
    sa.column("trial_id", sa.Integer),
    sa.column("key", sa.String),
    sa.column("value_json", sa.Text),
)


@retried
def note_on_trial(engine: sa.engine.Engine, trial_id: int, key: str, value: Any) -> None:
    """Set the user attribute ``key`` of the trial ``trial_id`` (finished or not) to ``value``."""
    encoded = json.dumps(value)
    with engine.begin() as conn:
        conn.execute(sa.delete(_user_attrs).where(_user_attrs.c.trial_id == trial_id)
                     .where(_user_attrs.c.key == key))
        conn.execute(sa.insert(_user_attrs).values(trial_id=trial_id, key=key, value_json=encoded))
