import io
import shlex

import optuna
from optuna.trial import TrialState
from rich.console import Console

from search.console.progress import StudyProgress, next_command, resume_command, trial_line
from search.options import StudyConfig, option_flag
from search.study import StudySnapshot


def _trial(number, state, value=None, epochs=None, reason=None):
    attrs = {"epochs": epochs, "train_seconds": 5.4123} if epochs else {}
    if reason:
        attrs["fail_reason"] = reason
    trial = optuna.trial.create_trial(state=state, value=value, user_attrs=attrs,
                                      intermediate_values={i: 0.5 + i / 10 for i in range(epochs or 0)})
    trial.number = number
    return trial


def _snapshot(trials, best=None):
    return StudySnapshot(study_name="s", config=StudyConfig(space_path="x.py", data="digits", epochs=10),
                         budget=4, claimed=len(trials), states={}, trials=trials, best=best)


def test_a_finished_trial_is_one_line_with_its_value_epochs_and_time():
    assert trial_line(_trial(3, TrialState.COMPLETE, 0.93981, epochs=3), "val_accuracy") == \
        "trial 3 complete, val_accuracy 0.9398, after 3 epochs, 5.41 s"
    assert trial_line(_trial(4, TrialState.PRUNED, 0.4, epochs=1), "val_accuracy") == \
        "trial 4 pruned, val_accuracy 0.4000, at epoch 1, 5.41 s"
    assert trial_line(_trial(5, TrialState.FAIL, reason="fit: ValueError: bad")) == \
        "trial 5 fail: fit: ValueError: bad"


def test_piped_output_is_one_line_per_finished_trial_each_printed_once():
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    progress = StudyProgress(console)
    progress.start(4, workers=2)
    done = _trial(0, TrialState.COMPLETE, 0.9, epochs=2)
    progress.update(_snapshot([done, _trial(1, TrialState.RUNNING, epochs=1)], best=done))
    progress.update(_snapshot([done, _trial(1, TrialState.PRUNED, 0.5, epochs=1)], best=done))
    progress.stop()
    lines = console.file.getvalue().splitlines()
    assert lines == ["trial 0 complete, val_accuracy 0.9000, after 2 epochs, 5.41 s - best so far",
                     "trial 1 pruned, val_accuracy 0.5000, at epoch 1, 5.41 s"]


def test_the_live_view_shows_each_running_trial_at_its_epoch_and_starting_workers():
    progress = StudyProgress(Console(width=100))
    progress.workers = 2
    view = progress.view(_snapshot([_trial(1, TrialState.RUNNING, epochs=3)]))
    text = "\n".join(str(line) for line in view.renderables)
    assert "0 of 4 trials finished | no trial complete yet" in text
    assert "trial 1 on a worker: epoch 3 of 10, val_accuracy 0.7000" in text
    assert "2 workers starting" in text


def test_the_resume_command_repeats_the_study_storage_options_and_set_values():
    command = resume_command("spaces/my cnn.py", "ctrlc",
                             {"study": None, "storage": "sqlite:///a.db", "trials": 4, "pruner": "none",
                              "epochs": None}, {"units": "32"}, option_flag)
    assert shlex.split(command) == ["search", "start", "spaces/my cnn.py", "--study", "ctrlc", "--storage",
                                    "sqlite:///a.db", "--trials", "4", "--pruner", "none", "--set", "units=32"]
    assert next_command("ctrlc", None) == "next: search analyze --study ctrlc"
