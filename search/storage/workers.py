"""The workers table beside Optuna's: who is working on a study, where, on what, and since when.

One row per worker process: host, pid, GPU (``CUDA_VISIBLE_DEVICES`` it was pinned to, or none),
the trial it runs, its state and its last heartbeat. Heartbeats are stamped with the database's
clock (``now()``), as Optuna stamps trial heartbeats, so workers on machines whose clocks differ
are judged alike; a worker is live while its state is not final and its heartbeat is younger than
the study's grace period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from search.storage.retry import retried, retrying

metadata = sa.MetaData()

workers_table = sa.Table(
    "search_workers",
    metadata,
    sa.Column("worker_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("slot", sa.Integer, nullable=True),
    sa.Column("gpu", sa.String(255), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=True),
    sa.Column("trials_run", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("last_heartbeat", sa.DateTime, nullable=False),
    # The batch job it runs in, as its scheduler names it (Slurm: 1234_2), or none.
    sa.Column("job", sa.String(64), nullable=True),
)

# A worker's states; the last two are final.
STARTING, RUNNING, IDLE, WAITING, EXITED, INTERRUPTED = (
    "starting", "running", "idle", "waiting", "exited", "interrupted")
FINAL_STATES = (EXITED, INTERRUPTED)


@dataclass
class WorkerRow:
    worker_id: int
    study_name: str
    host: str
    pid: int
    slot: int | None
    gpu: str | None
    state: str
    trial_number: int | None
    trials_run: int
    started_at: dt.datetime
    last_heartbeat: dt.datetime
    heartbeat_age_s: float  # seconds since the last heartbeat, by the database's clock
    job: str | None = None  # the batch job it runs in (Slurm: 1234_2)

    def live(self, grace_period_s: float) -> bool:
        return self.state not in FINAL_STATES and self.heartbeat_age_s <= grace_period_s

    def to_dict(self) -> dict:
        return {"worker_id": self.worker_id, "host": self.host, "pid": self.pid, "slot": self.slot,
                "gpu": self.gpu, "state": self.state, "trial": self.trial_number,
                "trials_run": self.trials_run, "started_at": self.started_at.isoformat(),
                "last_heartbeat": self.last_heartbeat.isoformat(),
                "heartbeat_age_s": round(self.heartbeat_age_s, 1), "job": self.job}


def _db_now(conn) -> dt.datetime:
    """The database's current time, naive, in the zone ``now()`` stores into a DateTime column."""
    now = conn.execute(sa.select(sa.func.now())).scalar()
    if isinstance(now, str):  # SQLite without type processing
        now = dt.datetime.fromisoformat(now)
    return now.replace(tzinfo=None)


def _add_job_column(engine: sa.engine.Engine) -> None:
    """A workers table made before the ``job`` column gets it (nullable: old rows have none)."""
    if "job" in {c["name"] for c in sa.inspect(engine).get_columns(workers_table.name)}:
        return
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {workers_table.name} ADD COLUMN job VARCHAR(64)"))
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # another process added it meanwhile
        if "job" not in {c["name"] for c in sa.inspect(engine).get_columns(workers_table.name)}:
            raise


class WorkerRegistry:
    """Register workers, stamp their heartbeats, list them."""

    def __init__(self, engine: sa.engine.Engine):
        self.engine = engine
        retrying(lambda: metadata.create_all(engine, checkfirst=True), "create tables")
        retrying(lambda: _add_job_column(engine), "add the job column")

    @retried
    def register(self, study_name: str, host: str, pid: int, slot: int | None,
                 gpu: str | None, job: str | None = None) -> int:
        with self.engine.begin() as conn:
            now = _db_now(conn)
            result = conn.execute(workers_table.insert().values(
                study_name=study_name, host=host, pid=pid, slot=slot, gpu=gpu, state=STARTING,
                trial_number=None, trials_run=0, started_at=now, last_heartbeat=now, job=job))
            return int(result.inserted_primary_key[0])

    @retried
    def beat(self, worker_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(workers_table.update().where(workers_table.c.worker_id == worker_id)
                         .values(last_heartbeat=_db_now(conn)))

    @retried
    def set_state(self, worker_id: int, state: str, trial_number: int | None = None,
                  finished_trial: bool = False) -> None:
        with self.engine.begin() as conn:
            values = {"state": state, "trial_number": trial_number, "last_heartbeat": _db_now(conn)}
            if finished_trial:
                values["trials_run"] = workers_table.c.trials_run + 1
            conn.execute(workers_table.update().where(workers_table.c.worker_id == worker_id)
                         .values(**values))

    @retried
    def list(self, study_name: str) -> list[WorkerRow]:
        """Every worker the study has had, newest first."""
        with self.engine.connect() as conn:
            now = _db_now(conn)
            rows = conn.execute(sa.select(workers_table)
                                .where(workers_table.c.study_name == study_name)
                                .order_by(workers_table.c.worker_id.desc())).mappings().all()
        return [WorkerRow(**{k: row[k] for k in row},
                          heartbeat_age_s=max(0.0, (now - row["last_heartbeat"]).total_seconds()))
                for row in rows]
