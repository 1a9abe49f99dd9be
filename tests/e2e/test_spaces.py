"""Every shipped space runs for real through the offline command its docstring documents (2 trials
on digits through the CLI, on CPU; ``--set weights=none`` where a space has pretrained bases,
digits upscaled by ``resize``).
Each space's docstring: tests/unit/test_spaces.py; pretrained bases offline: tests/unit/test_blocks.py."""

import ast
import shlex

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from search.space.loader import Space
from search.testing.cli import REPO, error_lines, run_cli

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    """400 of the digits (and 100 for the test split) as an .npz: the ImageNet-sized bases train
    on them in seconds per epoch on CPU."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "few_digits.npz"
    np.savez(path, x_train=x[:400], y_train=digits.target[:400], x_test=x[400:500],
             y_test=digits.target[400:500])
    return str(path)


def offline_command(space: str) -> list[str]:
    """The command a space's docstring marks ``# offline`` (the one its download error names)."""
    source = (REPO / "spaces" / f"{space}.py").read_text()
    command = Space(path="", source=source, hypermodel=None, default_data="", objective=None,
                    doc=ast.get_docstring(ast.parse(source))).offline_command
    assert command, f"spaces/{space}.py documents no offline command"
    return shlex.split(command)


def run_space(space, store_url, *extra, epochs="2", trials="2", data=None):
    """The space's documented offline command, on this test's store, with the test's budget (and
    a smaller data set where ImageNet-sized bases would take minutes an epoch on CPU)."""
    words = offline_command(space)
    assert words[:3] == ["search", "start", f"spaces/{space}.py"]
    result = run_cli(*words[1:], "--storage", store_url, "--trials", trials, "--epochs", epochs,
                     *(("--data", data) if data else ()), *extra, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert error_lines(result) == [], result.stderr[-3000:]  # no line that is not the product's own
    return optuna.load_study(study_name=space, storage=store_url).trials


def assert_learned(trials, floor=0.0):
    assert len(trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), \
        [t.user_attrs.get("fail_reason") for t in trials]
    assert max(t.value for t in trials) > floor


def test_cnn(store_url):
    trials = run_space("cnn", store_url)
    assert_learned(trials, floor=0.5)  # ten digit classes: chance is 0.1
    assert {"weight_decay", "activation", "learning_rate", "batch_size"} <= set(trials[0].params)


def test_vgg_two_phase_transfer(store_url, few_digits):
    # fine_tune_blocks=1: the head trains with the base frozen (epoch 1), then block5 is unfrozen.
    trials = run_space("vgg", store_url, "--set", "weights=none", "--set", "resize=32",
                       "--set", "fine_tune_blocks=1", "--set", "head_epochs=1", "--set", "batch_size=128",
                       data=few_digits)
    assert_learned(trials)
    for t in trials:
        assert len(t.user_attrs["history"]["val_accuracy"]) == 2  # both phases reported their epochs
        assert t.user_attrs["hp_values"]["resize"] == 32
    assert {t.params.get("base", t.user_attrs["hp_values"]["base"]) for t in trials} <= {"vgg16", "vgg19"}


def test_transfer_runs_a_base_at_its_minimum_size_and_refuses_below_it(store_url, few_digits):
    trials = run_space("transfer", store_url, "--set", "weights=none", "--set", "base=mobilenet_v2",
                       "--set", "resize=32", "--set", "batch_size=128", epochs="1", data=few_digits)
    assert_learned(trials)
    assert {t.user_attrs["hp_values"]["base"] for t in trials} == {"mobilenet_v2"}
    result = run_cli("start", "spaces/transfer.py", "--storage", store_url, "--study", "small",
                     "--data", few_digits, "--trials", "1", "--epochs", "1", "--set", "weights=none",
                     "--set", "base=xception", "--set", "resize=32")
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "resize 32 is below xception's minimum input size 71" in lines[0], lines
    assert "small" not in {s.study_name for s in optuna.get_all_study_summaries(store_url)}


def test_autoencoder_records_reconstruction_and_scores_the_classifier(store_url):
    trials = run_space("autoencoder", store_url, "--set", "depth=1")
    assert_learned(trials, floor=0.2)  # chance is 0.1; two classifier epochs reach about 0.4
    for t in trials:
        metrics = t.user_attrs["metrics"]
        assert metrics["reconstruction_loss"] > 0 and metrics["val_reconstruction_loss"] > 0
        assert metrics["val_accuracy"] == pytest.approx(t.value)
