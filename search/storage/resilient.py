"""Optuna's RDBStorage whose every operation rides out a dropped connection (see ``storage.retry``).

Optuna wraps each operation in one session; when the connection breaks mid-operation the session
is rolled back and the error raised. This subclass runs the same operation again once the store
answers. A retried write whose first attempt did commit (the acknowledgement was lost with the
connection) is recognised where it matters: finishing a trial that is already in the requested
state counts as done.
"""

from __future__ import annotations

import functools

import optuna
from optuna.trial import TrialState

from search.storage.retry import retrying

# Every storage call Optuna's Study and _CachedStorage make, public and private.
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
    "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "_get_trials", "get_n_trials", "get_best_trial",
    "_get_best_trial_id", "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs",
    "record_heartbeat", "_get_stale_trial_ids",
)


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` that retries an operation interrupted by a transient store error."""

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        parent = super().set_trial_state_values
        attempts = []

        def attempt():
            attempts.append(1)
            try:
                return parent(trial_id, state=state, values=values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # A retry after a lost acknowledgement: the first attempt did finish the trial.
                if len(attempts) > 1 and state.is_finished() and \
                        super(ResilientRDBStorage, self).get_trial(trial_id).state == state:
                    return True
                raise

        return retrying(attempt, "set_trial_state_values")


def _wrap(name: str):
    parent = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(parent)
    def method(self, *args, **kwargs):
        return retrying(lambda: parent(self, *args, **kwargs), name)

    return method


for _name in _RETRIED:
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(ResilientRDBStorage, _name, _wrap(_name))
