"""Optuna's RDBStorage whose every operation rides out a dropped connection (see ``storage.retry``).

Optuna wraps each operation in one session; when the connection breaks mid-operation the session
is rolled back and the error raised. This subclass runs the same operation again once the store
answers. A retried write whose first attempt did commit (the acknowledgement was lost with the
connection) is recognised where it matters: finishing a trial that is already in the requested
state counts as done.

Fewer round trips, the same rows (bench/ask_tell.py measures them):

- ``get_trial`` reads a trial in two statements instead of Optuna's six: the trial's row, then
  its parameters, values, attributes and reports in one ``UNION ALL`` (Optuna loads each of the
  five lazily, one query apiece). ``study.ask`` reads its new trial back once and ``study.tell``
  twice, so this is most of what their round trips were. The FrozenTrial is built by Optuna's
  own ``_build_frozen_trial_from_trial_model`` from the same columns.
- ``set_trial_user_attrs`` writes several user attributes in one transaction (one upsert
  statement), where ``set_trial_user_attr`` takes a transaction and a lookup of the trial each:
  the dozen attributes a worker records after every trial.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from types import SimpleNamespace
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

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


# The rows of trials' five child tables, as one UNION ALL (see get_trial): the trial, which
# table (kind), the row's id (Optuna's order), and the columns each table has, NULL where it has
# none.
_PARAM, _VALUE, _USER_ATTR, _SYSTEM_ATTR, _REPORT = range(5)
# _get_trials puts the ids of the unfinished trials it re-reads in twice; past this many, Optuna's
# own read (SQLite allows 999 bound values before 3.32).
_MANY_IDS = 400


def _children_query(trial_ids) -> sa.CompoundSelect:
    """The child rows of the trials ``trial_ids`` (one id, or a SELECT of ids)."""

    def row(kind, table, row_id, name=None, number=None, value=None, value_type=None, text=None):
        which = (table.c.trial_id.in_(trial_ids) if isinstance(trial_ids, sa.Select)
                 else table.c.trial_id == trial_ids)
        return sa.select(
            table.c.trial_id.label("trial_id"),
            sa.literal(kind, sa.Integer).label("kind"), row_id.label("row_id"),
            (name if name is not None else sa.null().cast(sa.String)).label("name"),
            (number if number is not None else sa.null().cast(sa.Integer)).label("number"),
            (value if value is not None else sa.null().cast(sa.Float)).label("value"),
            (value_type.cast(sa.String) if value_type is not None
             else sa.null().cast(sa.String)).label("value_type"),
            (text if text is not None else sa.null().cast(sa.Text)).label("text"),
        ).where(which)

    params = models.TrialParamModel.__table__
    values = models.TrialValueModel.__table__
    users = models.TrialUserAttributeModel.__table__
    systems = models.TrialSystemAttributeModel.__table__
    reports = models.TrialIntermediateValueModel.__table__
    return sa.union_all(
        row(_PARAM, params, params.c.param_id, name=params.c.param_name,
            value=params.c.param_value, text=params.c.distribution_json),
        row(_VALUE, values, values.c.trial_value_id, number=values.c.objective,
            value=values.c.value, value_type=values.c.value_type),
        row(_USER_ATTR, users, users.c.trial_user_attribute_id, name=users.c.key,
            text=users.c.value_json),
        row(_SYSTEM_ATTR, systems, systems.c.trial_system_attribute_id, name=systems.c.key,
            text=systems.c.value_json),
        row(_REPORT, reports, reports.c.trial_intermediate_value_id, number=reports.c.step,
            value=reports.c.intermediate_value, value_type=reports.c.intermediate_value_type),
    ).order_by("trial_id", "kind", "row_id")


def _trial_view(trial: models.TrialModel, rows) -> SimpleNamespace:
    """What ``_build_frozen_trial_from_trial_model`` reads of a TrialModel, its collections filled
    from the UNION ALL's rows (enum columns come back as their names)."""
    value_type = models.TrialValueModel.TrialValueType
    report_type = models.TrialIntermediateValueModel.TrialIntermediateValueType
    kids: dict[int, list] = {kind: [] for kind in range(5)}
    for r in rows:
        if r.kind == _PARAM:
            kids[_PARAM].append(SimpleNamespace(param_id=r.row_id, param_name=r.name,
                                                param_value=r.value, distribution_json=r.text))
        elif r.kind == _VALUE:
            kids[_VALUE].append(SimpleNamespace(objective=r.number, value=r.value,
                                                value_type=value_type[r.value_type]))
        elif r.kind in (_USER_ATTR, _SYSTEM_ATTR):
            kids[r.kind].append(SimpleNamespace(key=r.name, value_json=r.text))
        else:
            kids[_REPORT].append(SimpleNamespace(step=r.number, intermediate_value=r.value,
                                                 intermediate_value_type=report_type[r.value_type]))
    return SimpleNamespace(
        trial_id=trial.trial_id, number=trial.number, state=trial.state,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        params=kids[_PARAM], values=kids[_VALUE], user_attributes=kids[_USER_ATTR],
        system_attributes=kids[_SYSTEM_ATTR], intermediate_values=kids[_REPORT])


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` that retries an operation interrupted by a transient store error."""

    def get_trial(self, trial_id: int) -> FrozenTrial:
        def read():
            with _create_scoped_session(self.scoped_session) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                rows = session.execute(_children_query(trial_id)).all()
                return self._build_frozen_trial_from_trial_model(_trial_view(trial, rows))

        return retrying(read, "get_trial")

    def _get_trials(self, study_id: int, states, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        """Optuna's read of a study's trials (all, or those after ``trial_id_greater_than`` and
        the unfinished ones it names: how Optuna's cache catches up before every ask and
        sampling) in three statements instead of seven: the study checked, the trials' rows,
        their children in one UNION ALL."""
        included = {i for i in included_trial_ids if i <= trial_id_greater_than}
        if len(included) > _MANY_IDS:
            return retrying(lambda: super(ResilientRDBStorage, self)._get_trials(
                study_id, states, included_trial_ids, trial_id_greater_than), "_get_trials")
        trial_id = models.TrialModel.trial_id
        where = [models.TrialModel.study_id == study_id]
        if states is not None:
            where.append(models.TrialModel.state.in_(list(states)))
        if included and trial_id_greater_than > -1:
            where.append(sa.or_(trial_id.in_(included), trial_id > trial_id_greater_than))
        elif trial_id_greater_than > -1:
            where.append(trial_id > trial_id_greater_than)

        def read():
            with _create_scoped_session(self.scoped_session) as session:
                models.StudyModel.find_or_raise_by_id(study_id, session)  # it must exist
                trials = session.query(models.TrialModel).filter(*where).order_by(trial_id).all()
                if not trials:
                    return []
                rows: dict[int, list] = {t.trial_id: [] for t in trials}
                for r in session.execute(_children_query(sa.select(trial_id).where(*where))):
                    if r.trial_id in rows:  # a trial added since the first statement: not ours
                        rows[r.trial_id].append(r)
                return [self._build_frozen_trial_from_trial_model(_trial_view(t, rows[t.trial_id]))
                        for t in trials]

        return retrying(read, "_get_trials")

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Set several user attributes of a running trial in one transaction (an upsert each,
        as ``set_trial_user_attr`` does one at a time)."""
        if not attrs:
            return
        table = models.TrialUserAttributeModel.__table__
        rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]

        def write():
            with _create_scoped_session(self.scoped_session, True) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, trial.state)
                insert = None
                if self.engine.name == "postgresql":
                    insert = pg_dialect.insert(table)
                elif self.engine.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
                    insert = sqlite_dialect.insert(table)
                if insert is None:  # another database: Optuna's own way, one key at a time
                    for key, value in attrs.items():
                        self._set_trial_attr_without_commit(
                            session, models.TrialUserAttributeModel, trial_id, key, value)
                    return
                session.execute(insert.values(rows).on_conflict_do_update(
                    index_elements=[table.c.trial_id, table.c.key],
                    set_={"value_json": insert.excluded.value_json}))

        retrying(write, "set_trial_user_attrs")

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
    # Methods the class defines itself retry on their own.
    if hasattr(optuna.storages.RDBStorage, _name) and _name not in ResilientRDBStorage.__dict__:
        setattr(ResilientRDBStorage, _name, _wrap(_name))


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set user attributes of a running trial: in one transaction where the study's store is a
    :class:`ResilientRDBStorage` (behind the cache Optuna puts in front of an RDB storage), with
    ``trial.set_user_attr`` one at a time otherwise (another store, a ``FixedTrial``). The trial
    shows them at once, as after ``set_user_attr``."""
    store = getattr(trial, "storage", None)
    backend = getattr(store, "_backend", store)
    if not isinstance(trial, optuna.Trial) or not isinstance(backend, ResilientRDBStorage):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    backend.set_trial_user_attrs(trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)
