"""The notebook API: every public function of ``search`` called twice in one process, as a
notebook does, each returning the values it documents."""

import search
from search.testing.spaces import TINY_SPACE


def test_every_api_function_works_twice_in_one_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    space = tmp_path / "tiny.py"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"

    for budget, resumed in ((2, False), (3, True)):
        started = search.start(str(space), study="tiny", storage=url, trials=budget, epochs=1)
        assert isinstance(started, search.StartResult)
        assert (started.study_name, started.resumed, started.workers) == ("tiny", resumed, 1)
        assert started.snapshot.budget == budget and started.snapshot.finished == budget

    for _ in range(2):
        (snap,) = search.status("tiny", storage=url)
        assert isinstance(snap, search.StudySnapshot) and snap.finished == 3 and snap.best is not None
        assert [s.study_name for s in search.status(storage=url)] == ["tiny"]

    for i in range(2):
        analysis = search.analyze("tiny", storage=url)
        assert isinstance(analysis, search.StudyAnalysis)
        assert analysis.to_dict()["overview"]["trials"] == 3 and len(analysis.trials_frame()) == 3
        assert analysis.write_html(tmp_path / f"report{i}.html").stat().st_size > 10_000

    budget = 3
    for _ in range(2):
        queued = search.ablate("tiny", storage=url, params=["units"], repeats=1)
        assert isinstance(queued, search.AblationQueued) and queued.params == ["units"]
        assert queued.budget_before == budget and queued.budget_after == budget + len(queued.trials)
        budget = queued.budget_after
        ran = search.worker("tiny", storage=url)
        assert isinstance(ran, search.WorkerReport) and not ran.interrupted
        assert ran.trials == len(queued.trials) == ran.complete

    for evaluate in (False, True):
        found = search.best("tiny", storage=url, top=2, evaluate=evaluate)
        assert isinstance(found, search.BestTrials) and len(found.trials) == 2
        assert found.trials[0].value >= found.trials[1].value
        assert (found.trials[0].test_metrics is not None) == evaluate
