"""The project's own table beside Optuna's: one row per study with its configuration and space source.

A worker needs only the store URL and the study name: everything else is in this row. The row
also holds the study's trial budget and the count of trial slots claimed against it; a claim is a
single conditional UPDATE, atomic on SQLite and PostgreSQL alike, so the budget is exact however
many workers race for the last slot. An optional deadline (the study's wall-clock budget, in
seconds since the epoch) is part of the same UPDATE: past it, no slot is given. So is the reason
the study stopped (a Keras Tuner ``FatalError``, too many failed trials in a row): once it is set,
no worker gets a slot until a resume clears it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass

import sqlalchemy as sa

from search.storage.retry import retried, retrying

metadata = sa.MetaData()

study_records = sa.Table(
    "search_studies",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("space_path", sa.Text, nullable=False),
    sa.Column("space_sha256", sa.String(64), nullable=False),
    sa.Column("space_source", sa.Text, nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("budget", sa.Integer, nullable=False),
    sa.Column("claimed", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("deadline", sa.Float, nullable=True),
    sa.Column("stopped", sa.Text, nullable=True),
)


def _add_missing_columns(engine: sa.engine.Engine) -> None:
    """Stores made before a column existed get it (nullable columns only)."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(study_records.name)}
    with engine.begin() as conn:
        for column in study_records.columns:
            if column.name not in have and column.nullable:
                type_sql = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {study_records.name} ADD COLUMN {column.name} {type_sql}")


def _present_columns(engine: sa.engine.Engine) -> list[sa.Column]:
    """The table's columns as stored (none where the table is missing)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(study_records.name):
        return []
    have = {c["name"] for c in inspector.get_columns(study_records.name)}
    return [c for c in study_records.columns if c.name in have]


@dataclass
class StudyRecord:
    study_name: str
    space_path: str
    space_sha256: str
    space_source: str
    config: dict
    budget: int
    claimed: int = 0
    deadline: float | None = None  # seconds since the epoch; no new trial starts after it
    stopped: str | None = None  # why the study stopped (one line); no new trial starts while set

    @property
    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    @property
    def config_sha256(self) -> str:
        """The hash of the stored configuration (its canonical JSON, as stored)."""
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode("utf-8")).hexdigest()


class StudyRecords:
    """Read and write study records through a SQLAlchemy engine (Optuna's own, usually)."""

    def __init__(self, engine: sa.engine.Engine, *, create: bool = True):
        """``create=False`` (a read-only store, perhaps one ``search`` never wrote to): the table
        is read where it exists, never made or altered; a column it lacks reads as empty."""
        self.engine = engine
        if create:
            retrying(lambda: metadata.create_all(engine, checkfirst=True), "create tables")
            retrying(lambda: _add_missing_columns(engine), "add columns")
            self._columns = list(study_records.columns)
        else:
            self._columns = retrying(lambda: _present_columns(engine), "read tables")

    @retried
    def get(self, study_name: str) -> StudyRecord | None:
        if not self._columns:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*self._columns).where(study_records.c.study_name == study_name)
            ).mappings().first()
        if row is None:
            return None
        row = {c.name: row.get(c.name) for c in study_records.columns}
        return StudyRecord(
            study_name=row["study_name"],
            space_path=row["space_path"],
            space_sha256=row["space_sha256"],
            space_source=row["space_source"],
            config=json.loads(row["config_json"]),
            budget=row["budget"],
            claimed=row["claimed"],
            deadline=row["deadline"],
            stopped=row["stopped"],
        )

    @retried
    def add(self, record: StudyRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                study_records.insert().values(
                    study_name=record.study_name,
                    space_path=record.space_path,
                    space_sha256=record.space_sha256,
                    space_source=record.space_source,
                    config_json=json.dumps(record.config, sort_keys=True),
                    budget=record.budget,
                    claimed=record.claimed,
                    deadline=record.deadline,
                    created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                )
            )

    @retried
    def update(self, study_name: str, *, config: dict | None = None, budget: int | None = None,
               claimed: int | None = None, deadline: float | None | object = ...,
               stopped: str | None | object = ...) -> None:
        """Change the given fields; ``deadline=None`` removes the deadline, ``stopped=None`` the
        stop."""
        values = {}
        if deadline is not ...:
            values["deadline"] = deadline
        if stopped is not ...:
            values["stopped"] = stopped
        if config is not None:
            values["config_json"] = json.dumps(config, sort_keys=True)
        if budget is not None:
            values["budget"] = budget
        if claimed is not None:
            values["claimed"] = claimed
        if not values:
            return
        with self.engine.begin() as conn:
            conn.execute(
                study_records.update()
                .where(study_records.c.study_name == study_name)
                .values(**values)
            )

    @retried
    def claim(self, study_name: str) -> bool:
        """Take one trial slot of the budget; False when the budget is spent, the deadline past or
        the study stopped."""
        now = time.time()
        with self.engine.begin() as conn:
            result = conn.execute(
                study_records.update()
                .where(study_records.c.study_name == study_name)
                .where(study_records.c.claimed < study_records.c.budget)
                .where(study_records.c.stopped.is_(None))
                .where(sa.or_(study_records.c.deadline.is_(None), study_records.c.deadline > now))
                .values(claimed=study_records.c.claimed + 1)
            )
        return result.rowcount == 1

    @retried
    def grow_budget(self, study_name: str, trials: int) -> int:
        """Add ``trials`` slots to the budget in one atomic update (trials queued by ``search
        ablate``); returns the new budget."""
        with self.engine.begin() as conn:
            conn.execute(
                study_records.update()
                .where(study_records.c.study_name == study_name)
                .values(budget=study_records.c.budget + trials)
            )
            return conn.execute(sa.select(study_records.c.budget)
                                .where(study_records.c.study_name == study_name)).scalar_one()

    @retried
    def stop(self, study_name: str, reason: str) -> str:
        """Stop the study with ``reason`` unless it is stopped already; returns the reason in
        force (the first one given)."""
        with self.engine.begin() as conn:
            conn.execute(
                study_records.update()
                .where(study_records.c.study_name == study_name)
                .where(study_records.c.stopped.is_(None))
                .values(stopped=reason)
            )
            return conn.execute(sa.select(study_records.c.stopped)
                                .where(study_records.c.study_name == study_name)).scalar_one()

    @retried
    def release(self, study_name: str) -> None:
        """Give back a slot whose trial was interrupted, so that it is run again."""
        with self.engine.begin() as conn:
            conn.execute(
                study_records.update()
                .where(study_records.c.study_name == study_name)
                .where(study_records.c.claimed > 0)
                .values(claimed=study_records.c.claimed - 1)
            )

    @retried
    def delete(self, study_name: str) -> None:
        """Remove the study's record (its Optuna study is removed by the caller)."""
        with self.engine.begin() as conn:
            conn.execute(study_records.delete().where(study_records.c.study_name == study_name))

    @retried
    def names(self) -> list[str]:
        if not self._columns:
            return []
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(study_records.c.study_name))]
