"""An HTML report whose study holds user strings that are a script (:func:`report_with_a_script`):
the report's checks (escaping, validity) and its run in a real browser start from it."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.testing.synthetic import build_study, space_config

XSS = "<script>alert(1)</script>"


def report_with_a_script(folder: Path):
    """A synthetic study of 120 trials named ``digits <script>...``, an ablation of the optimizer
    and the batch size with their two-factor grid, plus a failed and a complete trial whose value
    and failure reason hold the script too, analyzed and written to ``folder/sub/report.html``:
    (the analysis, the report's path, its text)."""
    import keras_tuner as kt

    from search.analysis import analyze, write_html
    from search.space import ablation
    from search.testing.synthetic import add_ablation_trials

    study = build_study(120, seed=5, study_name=f"digits {XSS}")
    best = analyze(study, space=space_config()).overview["best"]["params"]
    add_ablation_trials(study, ablation.plan(best, kt.HyperParameters.from_config(space_config()),
                                             ["optimizer", "batch_size"], repeats=2, interaction=True))
    attrs = {"hp_values": {"learning_rate": 1e-3, "optimizer": XSS, "batch_size": 32,
                           "classes": 10, "dropout": 0.1, "beta": 0.95},
             "fail_reason": f"fit: ValueError: {XSS}"}
    study.add_trial(optuna.create_trial(
        state=TrialState.FAIL, params={"learning_rate": 1e-3},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)},
        user_attrs=attrs))
    done = dict(attrs, fail_reason=None, history={"val_accuracy": [0.5, 0.6]}, epochs=2,
                best_epoch=1, train_seconds=2.0, trainable_params=1000)
    study.add_trial(optuna.create_trial(
        value=0.6, params={"learning_rate": 1e-3},
        distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)},
        user_attrs=done))
    result = analyze(study, space=space_config())
    path = write_html(result, study, folder / "sub" / "report.html")
    return result, path, path.read_text(encoding="utf-8")
