"""A trial whose worker died (no heartbeat for longer than the grace period) is failed, retried
once on its own budget slot, and a second death keeps its slot (the faults of whole studies:
tests/e2e/test_faults.py and tests/e2e/test_workers.py); the heartbeat takes turns with the loop
on the one pooled connection."""

import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search import storage
from search.execution.faults import StaleTrialRetry, fail_stale_trials, open_for_work
from search.execution.worker import recount_claims
from search.options import StudyConfig


def test_a_stale_trial_is_failed_retried_once_and_gives_its_slot_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = storage.open_storage(url)
    records = storage.StudyRecords(store.engine)
    config = StudyConfig(space_path="x.py", data="digits", heartbeat=1, grace=1, max_retry=1)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config=config.to_dict(), budget=3))
    optuna.create_study(study_name="s", storage=store)
    handle = open_for_work(url, "s")
    assert isinstance(handle.storage.heartbeat_stale_trial_callback, StaleTrialRetry)
    study = optuna.load_study(study_name="s", storage=handle.storage)
    assert records.claim("s")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    handle.storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)  # no heartbeat for longer than the grace period: the worker "died"
    fail_stale_trials(study)
    fail_stale_trials(study)  # a second reaper finds nothing more to do
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params and trials[1].system_attrs["retry_history"] == [0]
    assert records.get("s").claimed == 0  # the retry runs on the dead trial's slot
    assert recount_claims(handle) == 0
    # the retry dies too: max_retry=1 is spent, the failure keeps its slot
    assert records.claim("s")
    retry = study.ask()
    assert retry.number == 1 and retry.params == trials[0].params
    handle.storage.record_heartbeat(retry._trial_id)
    time.sleep(2.2)
    fail_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert records.get("s").claimed == 1 == recount_claims(handle)


# ------------------------------------------------------------------ a worker that dies in a trial


def test_the_phase_file_says_which_trial_runs_in_which_step_and_survives_the_writer(tmp_path):
    from search.execution.faults import IDLE, PhaseFile

    path = str(tmp_path / "w.phase")
    phases = PhaseFile(path)
    assert PhaseFile.read(path) is None  # idle from the start
    phases.set(7, 3, "build()")
    phases.set(7, 3, "fit()")  # rewritten in place: no longer line left over
    assert PhaseFile.read(path) == (7, 3, "fit()")
    phases.set(None, None, IDLE)
    assert PhaseFile.read(path) is None
    phases.set(8, 4, "storing its result")
    phases.close()  # what a dead process leaves is still there to read
    assert PhaseFile.read(path) == (8, 4, "storing its result")
    assert PhaseFile.read(str(tmp_path / "missing.phase")) is None
    PhaseFile(None).set(1, 1, "fit()")  # a worker no pool started writes nothing


def test_a_death_reason_says_how_and_in_which_step():
    import signal

    from search.execution.faults import death_reason, exit_text

    assert death_reason(0, "build()") == "worker exited with status 0 during build()"
    assert death_reason(3, "fit()", "MemoryError") == "worker exited with status 3 during fit(): MemoryError"
    assert death_reason(-signal.SIGSEGV, "fit()") == "worker killed by SIGSEGV during fit()"
    assert exit_text(-signal.SIGKILL) == "killed by SIGKILL (by the kernel: out of memory? or a kill -9)"
    assert exit_text(-200) == "killed by signal 200"


def _study_with_a_running_trial(tmp_path, max_retry=1, max_consecutive_failures=3):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = storage.open_storage(url)
    records = storage.StudyRecords(store.engine)
    config = StudyConfig(space_path="x.py", data="digits", max_retry=max_retry,
                         max_consecutive_failures=max_consecutive_failures)
    records.add(storage.StudyRecord(study_name="s", space_path="x.py", space_sha256="0" * 64,
                                    space_source="", config=config.to_dict(), budget=2))
    optuna.create_study(study_name="s", storage=store)
    handle = open_for_work(url, "s")
    study = optuna.load_study(study_name="s", storage=handle.storage)
    assert records.claim("s")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.set_user_attr("history", {"loss": [1.0]})
    return handle, study, records, trial


def test_a_dead_workers_trial_fails_at_once_with_its_reason_and_is_retried_without_it(tmp_path):
    from search.execution.faults import fail_dead_trial

    handle, study, records, trial = _study_with_a_running_trial(tmp_path)
    reason = "worker killed by SIGSEGV during fit()"
    assert fail_dead_trial(handle, trial._trial_id, reason) is True
    assert fail_dead_trial(handle, trial._trial_id, reason) is None  # already failed: nothing more
    died, retry = study.trials
    assert (died.state, died.user_attrs["fail_reason"]) == (TrialState.FAIL, reason)
    assert retry.state == TrialState.WAITING and retry.params == died.params
    assert "fail_reason" not in retry.user_attrs  # the copy runs clean; it is not a failure yet
    assert records.get("s").claimed == 0  # its slot went back for the retry
    assert records.claim("s")
    again = study.ask()
    assert again.number == 1
    assert fail_dead_trial(handle, again._trial_id, reason) is False  # --max-retry 1 spent
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert records.get("s").claimed == 1


def test_a_dead_workers_finished_trial_is_left_as_it_was(tmp_path):
    from search.execution.faults import fail_dead_trial

    handle, study, records, trial = _study_with_a_running_trial(tmp_path)
    study.tell(trial, 0.5)
    assert fail_dead_trial(handle, trial._trial_id, "worker exited with status 0 during scoring") is None
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.5)]


def test_dead_workers_trials_failed_too_many_in_a_row_stop_the_study(tmp_path):
    from search.execution.faults import fail_dead_trial

    handle, study, records, trial = _study_with_a_running_trial(tmp_path, max_retry=0,
                                                                max_consecutive_failures=2)
    reason = "worker exited with status 0 during build()"
    assert fail_dead_trial(handle, trial._trial_id, reason) is False  # no retries: it stays failed
    assert records.get("s").stopped is None  # one in a row
    assert records.claim("s")
    second = study.ask()
    assert fail_dead_trial(handle, second._trial_id, reason) is False
    assert records.get("s").stopped == (
        "2 trials failed in a row (--max-consecutive-failures 2, Keras Tuner's "
        f"max_consecutive_failed_trials); the last, trial 1: {reason}")


def test_a_trial_failed_for_its_dead_worker_leaves_no_checkpoint(tmp_path):
    """A worker that died between its checkpoint's upload and its tell: the file and the index
    entry go with the failed trial, as a later worker's settle() would have removed them."""
    from optuna.artifacts import upload_artifact

    from search.execution.checkpoints import INDEX_PREFIX, Checkpoints
    from search.execution.faults import fail_dead_trial

    handle, study, records, trial = _study_with_a_running_trial(tmp_path)
    checkpoints = Checkpoints.of(handle.storage, handle.study_id, handle.config)
    weights = tmp_path / "trial_0.weights.npz"
    weights.write_bytes(b"weights")
    artifact_id = upload_artifact(artifact_store=checkpoints.store, file_path=str(weights),
                                  study_or_trial=trial)
    handle.storage.set_study_system_attr(handle.study_id, f"{INDEX_PREFIX}{trial.number}",
                                         {"value": 0.9, "epoch": 1, "artifact_id": artifact_id})
    folder = Path(checkpoints.location)
    assert [p.name for p in folder.iterdir()] == [artifact_id]
    assert fail_dead_trial(handle, trial._trial_id, "worker killed by SIGKILL during fit()") is True
    assert list(folder.iterdir()) == []
    assert checkpoints.ranked() == []


class _RecordedHeartbeat:
    """search.execution.faults.Heartbeat over a real SQLAlchemy pool, its beats timed."""

    @staticmethod
    def make(tmp_path, interval: float):
        import types

        import sqlalchemy as sa

        from search.execution.faults import Heartbeat

        engine = sa.create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, max_overflow=4)
        stored = types.SimpleNamespace(config=types.SimpleNamespace(heartbeat=interval),
                                       storage=types.SimpleNamespace(engine=engine))
        beats = []

        class Timed(Heartbeat):
            def beat(self):
                beats.append(time.monotonic())

        return Timed(stored, worker_id=1), engine, beats

    @staticmethod
    def first_beat(heartbeat, beats) -> None:
        """Start ``heartbeat`` and wait (up to 30 s) for its first beat."""
        heartbeat.start()
        deadline = time.monotonic() + 30
        while not beats and time.monotonic() < deadline:
            time.sleep(0.05)
        heartbeat.stop()


def test_the_heartbeat_waits_while_the_loop_holds_the_connection(tmp_path):
    heartbeat, engine, beats = _RecordedHeartbeat.make(tmp_path, interval=2.0)
    started = time.monotonic()
    conn = engine.connect()  # the worker's loop, in a store call
    released = []
    timer = threading.Timer(2.4, lambda: (released.append(time.monotonic()), conn.close()))
    timer.start()
    _RecordedHeartbeat.first_beat(heartbeat, beats)
    timer.join()
    assert beats and beats[0] >= released[0]  # it did not open a second connection meanwhile
    assert beats[0] - started >= 2.0


def test_a_loop_that_keeps_the_connection_does_not_silence_the_heartbeat(tmp_path):
    heartbeat, engine, beats = _RecordedHeartbeat.make(tmp_path, interval=1.0)
    started = time.monotonic()
    conn = engine.connect()
    _RecordedHeartbeat.first_beat(heartbeat, beats)
    conn.close()
    assert beats and beats[0] - started >= 1.5  # the interval and half of it waited, then it beat
