"""A trial whose worker died (no heartbeat for longer than the grace period) is failed, retried
once on its own budget slot, and a second death keeps its slot (the faults of whole studies:
tests/e2e/test_faults.py and tests/e2e/test_workers.py)."""

import time

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
