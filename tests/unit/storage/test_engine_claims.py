"""Exact claims of WAITING trials on SQLite: Optuna's ``SELECT ... FOR UPDATE`` is a no-op there,
and 8 processes claiming 200 enqueued trials claimed some twice; the store's ``BEGIN IMMEDIATE``
makes each claim atomic. (A module of its own, with light imports: the 8 spawned processes import
it, and must not import a deep-learning backend.)"""

from __future__ import annotations

import collections
import multiprocessing

import optuna
from optuna.trial import TrialState

from search import storage


def _claim_enqueued(url: str, out) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = storage.open_storage(url)
    study = optuna.load_study(study_name="claims", storage=store,
                              sampler=optuna.samplers.RandomSampler())
    mine = []
    while True:
        trial = study.ask()
        fixed = store.get_trial(trial._trial_id).system_attrs.get("fixed_params", {})
        if "i" not in fixed:  # no WAITING trial left: a fresh trial was created
            study.tell(trial, state=TrialState.FAIL)
            break
        mine.append(fixed["i"])
        study.tell(trial, 1.0)
    out.put(mine)


def test_eight_processes_claim_200_waiting_trials_exactly_once_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    study = optuna.create_study(study_name="claims", storage=storage.open_storage(url))
    for i in range(200):
        study.enqueue_trial({"i": i})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_enqueued, args=(url, out)) for _ in range(8)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    counts = collections.Counter(i for mine in claimed for i in mine)
    assert sorted(counts) == list(range(200))
    assert set(counts.values()) == {1}  # none twice
    assert sum(1 for mine in claimed if mine) > 1  # the processes really did race
    complete = optuna.load_study(study_name="claims", storage=url).get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 200
