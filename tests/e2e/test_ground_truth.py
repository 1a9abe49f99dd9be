"""Issue 15's real-study check: `search analyze` on a real digits study, against a ground truth
trained here with plain Keras.

The study (the user's commands, each a CLI process): `spaces/cnn.py` with its architecture, batch
size, resize and number of classes fixed with `--set` (10 classes: a fixed condition is not
swept), 16 random-search trials of 3 epochs tuning the optimizer and learning rate, then
`search ablate --params optimizer,learning_rate` (one factor at a time around the best trial, 3
repeats) run by `search worker`, then `search analyze --format json`.

The ground truth: every configuration the ablation ran (the values its trials used, read from
the store), trained by this test with plain Keras Tuner + Keras (the space's own `build` and
`fit` on a `keras_tuner.HyperParameters`, `model.fit` on the same digits split; none of the
service's runner, callbacks, pruning or analysis) on 3 other seeds, scored as the service scores
a trial (the best epoch's val_accuracy). Checked:

- on a trial's own seed, plain Keras gives the trial's value exactly (the service trains what
  Keras trains: no data, label, batch or scoring difference);
- on other seeds, the ablation's repeats and the ground truth's are samples of one distribution
  (a Welch test per configuration). Why not "the ground truth's mean inside the ablation's
  interval": both are 3-seed estimates, and at 3 epochs a configuration's seed spread is wide
  (lr 1e-4: 0.29-0.36 on the ablation's seeds, lower on others), so that check fails on seed
  noise alone in about one study of three (seen: 3 of 10 values outside, every one of them a
  value the two samples did not tell apart);
- every ablation effect the report calls clear (its 95% interval excludes 0) has the ground
  truth's sign, unless the ground truth itself cannot tell (within 2 of its standard errors of 0);
- the search-trial report makes no confident wrong claim about the optimizer: a value it calls
  worse than its best is not better than that best in the ground truth.

Slow (about 7 minutes on 2 cores)."""

import json
import math
import statistics

import numpy as np
import optuna
import pytest

from search.testing.cli import REPO, run_cli
from search.testing.ground_truth import load_space_module
from search.testing.ground_truth import plain_keras_score as ground_truth_score

pytestmark = pytest.mark.slow

EPOCHS = 3
SEEDS = (1000, 1001, 1002)  # not the ablation trials' seeds (their trial numbers, 16..)
FIXED = {"conv_blocks": 2, "convs_per_block": 1, "filters": 32, "kernel_size": 3, "batch_norm": "false",
         "activation": "relu", "conv_dropout": 0, "weight_decay": "none", "pooling": "global_avg",
         "dense_units": 64, "dense_dropout": 0, "classes": 10, "resize": 8, "batch_size": 32}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study's store URL and `search analyze --format json` after its ablation."""
    work = tmp_path_factory.mktemp("ground-truth")
    url = f"sqlite:///{work / 'gt.db'}"
    sets = [arg for name, value in FIXED.items() for arg in ("--set", f"{name}={value}")]
    steps = [
        ("start", str(REPO / "spaces" / "cnn.py"), "--study", "gt", "--trials", "16", "--epochs", str(EPOCHS),
         "--sampler", "random", *sets),
        ("ablate", "--study", "gt", "--params", "optimizer,learning_rate"),
        ("worker", "--study", "gt"),
    ]
    for step in steps:
        done = run_cli(*step, "--storage", url, cwd=work, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    analysis = run_cli("analyze", "--study", "gt", "--storage", url, "--format", "json", cwd=work)
    assert analysis.returncode == 0, analysis.stderr
    return url, json.loads(analysis.stdout)


def _space():
    return load_space_module(REPO / "spaces" / "cnn.py", "cnn_space_plain")


def plain_keras_score(space, dataset, values: dict, seed: int) -> float:
    return ground_truth_score(space, dataset, values, seed, EPOCHS)


@pytest.fixture(scope="module")
def ablation_runs(study):
    """(param, value) -> (the values the ablation trials used, their scores), from the store."""
    url, _ = study
    trials = optuna.load_study(study_name="gt", storage=url).trials
    assert not any("condition" in t.user_attrs for t in trials)  # classes fixed: no condition swept
    runs: dict = {}
    for t in trials:
        tag = t.user_attrs.get("ablation")
        if tag and t.value is not None:
            _, scores = runs.setdefault(_key(tag["param"], tag["value"]), (t.user_attrs["hp_values"], []))
            scores.append((t.user_attrs["seed"], t.value))
    assert len(runs) >= 10, sorted(runs)
    return runs


@pytest.fixture(scope="module")
def ground_truth(ablation_runs):
    """(param, value) -> the plain-Keras scores over SEEDS of every configuration the ablation ran."""
    from search import _datasets

    space, dataset = _space(), _datasets.load("digits", 0)  # the study's data and seed (the default)
    scores, by_config = {}, {}
    for key, (values, _) in ablation_runs.items():
        config = json.dumps(values, sort_keys=True)  # the two parameters' centers are one configuration
        if config not in by_config:
            by_config[config] = [plain_keras_score(space, dataset, values, s) for s in SEEDS]
        scores[key] = by_config[config]
    return space, dataset, scores


def _key(param, value):
    return param, (round(value, 12) if isinstance(value, float) else value)


def _mean_se(scores):
    return statistics.mean(scores), statistics.stdev(scores) / math.sqrt(len(scores))


def test_a_trial_trains_exactly_what_plain_keras_trains_on_its_seed(ablation_runs, ground_truth):
    space, dataset, _ = ground_truth
    for key in [k for k in ablation_runs if k[0] == "optimizer"][:3]:
        values, scores = ablation_runs[key]
        seed, value = scores[0]
        assert plain_keras_score(space, dataset, values, seed) == pytest.approx(value, abs=1e-6), key


def test_the_ablation_measures_what_plain_keras_measures_on_other_seeds(ablation_runs, ground_truth):
    """Per configuration, the ablation's repeats and the ground truth's seeds are two samples of
    one distribution: a Welch test finds them apart (p < 0.01) for at most one of them."""
    from scipy import stats

    _, _, truth = ground_truth
    apart = []
    for key, (_, runs) in ablation_runs.items():
        ours, theirs = [v for _, v in runs], truth[key]
        if np.ptp(ours) == 0 and np.ptp(theirs) == 0:  # both stuck at one value (chance)
            p = 1.0 if np.isclose(ours[0], theirs[0]) else 0.0
        else:
            p = stats.ttest_ind(ours, theirs, equal_var=False).pvalue
        if p < 0.01:
            apart.append(f"{key}: ablation {np.round(ours, 3)}, plain Keras {np.round(theirs, 3)}, p={p:.4f}")
    assert len(apart) <= 1, apart


def test_every_clear_ablation_effect_has_the_ground_truths_sign(study, ground_truth):
    _, analysis = study
    _, _, truth = ground_truth
    checked = 0
    for effect in analysis["ablation"]:
        name = effect["name"]
        center, center_se = _mean_se(truth[_key(name, effect["center"])])
        for row in effect["rows"]:
            clear = row["effect_high"] < 0 or row["effect_low"] > 0
            if _key(name, row["value"]) == _key(name, effect["center"]) or not clear:
                continue
            mean, se = _mean_se(truth[_key(name, row["value"])])
            gt, gt_se = mean - center, math.hypot(se, center_se)
            checked += 1
            assert np.sign(gt) == np.sign(row["effect"]) or abs(gt) <= 2 * gt_se, (
                f"{name}={row['value']}: ablation {row['effect']:+.3f} [{row['effect_low']:+.3f}, "
                f"{row['effect_high']:+.3f}], plain Keras {gt:+.3f} (se {gt_se:.3f})")
    assert checked >= 4  # lr at both ends and the weak optimizers are clear on this study


def test_search_trial_verdicts_make_no_confident_wrong_claim_about_the_optimizer(study, ground_truth):
    _, analysis = study
    optimizer = next(p for p in analysis["parameters"] if p["name"] == "optimizer")
    _, _, scores = ground_truth
    truth = {value: _mean_se(s) for (param, value), s in scores.items() if param == "optimizer"}
    rows = [r for r in optimizer["rows"] if r["model_mean"] is not None]
    best = max(rows, key=lambda r: r["model_mean"])["value"]  # the report's best value
    claims = [r for r in rows if r["worse_than_best"] or r["row_verdict"] == "hurts"]
    for row in claims:
        (mean, se), (best_mean, best_se) = truth[row["value"]], truth[best]
        assert mean <= best_mean + 2 * math.hypot(se, best_se), (row, best, truth)
