"""Slots: one worker per GPU (or per CPU slot), several per GPU, GPUs named explicitly."""

import pytest

from search.errors import SearchError
from search.execution.devices import plan_slots
from search.options import check


def test_slots_per_gpu_workers_and_cpu(monkeypatch):
    monkeypatch.setattr("search.execution.devices.visible_gpus", list)
    assert plan_slots() == [None]
    assert plan_slots(per_gpu=3) == [None, None, None]
    assert plan_slots(workers=2) == [None, None]
    assert plan_slots(gpus="0,1", per_gpu=2) == ["0", "0", "1", "1"]
    assert plan_slots(gpus="1") == ["1"]
    monkeypatch.setattr("search.execution.devices.visible_gpus", lambda: ["0", "1"])
    assert plan_slots() == ["0", "1"]
    assert plan_slots(workers=3) == ["0", "1", "0"]
    with pytest.raises(SearchError, match="no GPU 7"):
        plan_slots(gpus="0,7")
    for kwargs, message in [({"gpus": "0,,1"}, "comma-separated"), ({"gpus": "0,0"}, "listed twice"),
                            ({"workers": 2, "per_gpu": 2}, "not both")]:
        with pytest.raises(SearchError, match=message):
            plan_slots(**kwargs)
    with pytest.raises(SearchError, match="per_gpu must be at least 1"):
        check("per_gpu", 0)  # --per-gpu is checked as an option, before any slot is planned


@pytest.mark.parametrize("gpus, kwargs, asked", [
    ([], {"workers": 10**12}, f"--workers {10**12}"),
    ([], {"per_gpu": 10**12}, f"--per-gpu {10**12}"),
    (["0", "1"], {"per_gpu": 10**12}, f"--per-gpu {10**12} on 2 GPUs"),
])
def test_more_workers_than_the_machine_holds_are_refused_before_their_slots_are_listed(
        monkeypatch, gpus, kwargs, asked):
    """--workers 10**12 is the machine's one line, not a MemoryError from listing the slots."""
    monkeypatch.setattr("search.execution.devices.visible_gpus", lambda: gpus)
    with pytest.raises(SearchError, match=rf"^{asked}: this machine runs at most \d+ local workers"):
        plan_slots(**kwargs)
