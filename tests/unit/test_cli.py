"""The command line's first answers: every check that needs no Keras runs before Keras,
TensorFlow, plotly or scipy are imported, and the output has no line that is not ours."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from search.testing.cli import REPO, run_cli

HEAVY = ("tensorflow", "keras", "keras_tuner", "plotly", "scipy", "jax", "torch")

# Runs each command in one fresh process, in order, and prints which heavy modules each left in
# sys.modules, with its exit status.
_PROBE = r"""
import json, sys
from search.cli import main
heavy = json.loads(sys.argv[1])
for args in json.loads(sys.argv[2]):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"args": args, "code": code,
                      "loaded": [m for m in heavy if m in sys.modules]}), file=sys.__stdout__)
"""


def _probe(commands, cwd):
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(HEAVY), json.dumps(commands)],
                            capture_output=True, text=True, cwd=cwd, timeout=300, check=False)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(commands), result.stderr
    return rows, result.stderr


def test_usage_errors_and_missing_studies_are_answered_before_any_backend_loads(tmp_path):
    (tmp_path / "notes.txt").write_text("not python\n")
    (tmp_path / "broken.py").write_text("def build(hp:\n")
    commands = [
        ["--help"],
        ["--version"],
        ["start", "missing.py"],
        ["start", "notes.txt"],
        ["start", "broken.py"],
        ["start", str(REPO / "spaces" / "cnn.py"), "--trials", "0"],
        ["start", str(REPO / "spaces" / "cnn.py"), "--pruner", "nope"],
        ["status"],
        ["status", "--study", "cnnn"],
        ["analyze", "--study", "cnnn"],
        ["best", "--study", "cnnn"],
        ["ablate", "--study", "cnnn"],
    ]
    rows, stderr = _probe(commands, tmp_path)
    for row in rows:
        assert row["loaded"] == [], row
    codes = [row["code"] for row in rows]
    assert codes[:2] == [0, 0]
    assert all(code != 0 for code in codes[2:7]), rows
    assert all(code != 0 for code in codes[8:]), rows
    assert "syntax error at line 1" in stderr
    assert not (tmp_path / "search.db").exists()  # answering created no store


def test_a_study_in_an_existing_store_is_read_without_a_backend(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    optuna.create_study(study_name="plain", storage=url)
    rows, _ = _probe([["status", "--storage", url], ["status", "--study", "cnnn", "--storage", url],
                      ["analyze", "--study", "cnnn", "--storage", url]], tmp_path)
    assert [row["loaded"] for row in rows] == [[], [], []]
    assert [row["code"] for row in rows] == [0, 1, 1]


def test_version_names_the_libraries_and_the_backend():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith("search ") and "Keras backend: " in first
    for name in ("keras ", "keras-tuner ", "optuna "):
        assert name in second
    assert result.stderr == ""


@pytest.mark.parametrize("args", [["--bogus"], ["start", "--bogus", "x.py"], ["status", "--format", "yaml"]])
def test_usage_errors_are_one_line(args):
    result = run_cli(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_start_without_a_space_file_lists_the_shipped_spaces_and_an_example():
    result = run_cli("start")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "give a space file; the spaces in spaces:"
    assert any(line.startswith("  spaces/vgg.py: VGG16/VGG19 transfer learning") for line in lines)
    assert lines[-1] == "for example: search start spaces/cnn.py --trials 4 --epochs 5"
