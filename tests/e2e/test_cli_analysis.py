"""`search analyze` and `search ablate` on a real tiny study (digits, one epoch per trial).

One study is built per module, in this process (a worker run in-process is seconds; a CLI process
pays for importing the backend): 3 search trials, then `search ablate` queues one-factor trials
around the best one, a worker runs them, and `search analyze` reads it all back.
"""

import json
import sqlite3
import subprocess
import sys
import textwrap
from io import StringIO
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from search import cli
from search.commands.start import prepare
from search.execution.worker import run_worker, space_hyperparameters
from search.options import start_options
from search.space.bridge import REVERSE_LOG_SUFFIX, param_mapping
from search.storage import StudyRecords, open_storage
from search.testing.cli import REPO
from search.testing.spaces import TINY_SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)

# TINY_SPACE plus a reverse_log parameter, whose Optuna name is not its own.
SPACE = TINY_SPACE.replace(
    "    model.compile(optimizer=keras.optimizers.Adam(",
    '    beta = hp.Float("beta_1", 0.5, 0.99, sampling="reverse_log")\n'
    "    model.compile(optimizer=keras.optimizers.Adam(beta_1=beta, learning_rate=",
)
SEARCH_TRIALS = 3
REPEATS = 2


def invoke(*args):
    """The CLI in this process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    space = root / "tiny.py"
    space.write_text(SPACE)
    url = f"sqlite:///{root / 'store.db'}"
    prepare(start_options(str(space), storage=url, trials=SEARCH_TRIALS, epochs=1,
                         pruner="none", keep_best=0))
    run_worker(url, "tiny")
    code, out, err = invoke("ablate", "--study", "tiny", "--storage", url, "--params", "batch_size",
                            "--repeats", REPEATS)
    assert code == 0, err
    queued = optuna.load_study(study_name="tiny", storage=url).get_trials(states=(TrialState.WAITING,))
    budget = StudyRecords(open_storage(url).engine).get("tiny").budget
    before_run = root / "queued.db"  # a copy of the study with the queue, not run
    with sqlite3.connect(root / "store.db") as source, sqlite3.connect(before_run) as copy:
        source.backup(copy)
    report = run_worker(url, "tiny")
    return SimpleNamespace(root=root, url=url, space=space, ablate_out=out, queued=queued,
                           budget_after_ablate=budget, worker=report,
                           queued_url=f"sqlite:///{before_run}")


def trials(url):
    return optuna.load_study(study_name="tiny", storage=url).get_trials()


def best_search_trial(all_trials):
    search = [t for t in all_trials if t.state == TrialState.COMPLETE and "ablation" not in t.user_attrs]
    return max(search, key=lambda t: (t.value, -t.number))


def test_ablate_queues_exactly_the_one_factor_configurations(study):
    best = best_search_trial(trials(study.url))
    center = best.user_attrs["hp_values"]
    # batch_size is a Choice [32, 64]: both values, the others held at the best trial's values
    expected = [dict(center, batch_size=v) for v in (32, 64) for _ in range(REPEATS)]
    assert len(study.queued) == len(expected) == 4
    assert study.budget_after_ablate == SEARCH_TRIALS + 4
    for want, t in zip(expected, study.queued):
        params = t.system_attrs["fixed_params"]  # what enqueue_trial stored for the worker
        assert t.user_attrs["ablation"]["param"] == "batch_size"
        assert t.user_attrs["ablation"]["value"] == want["batch_size"]
        assert t.user_attrs["ablation"]["center"] == center["batch_size"]
        assert params["units"] == want["units"] and params["batch_size"] == want["batch_size"]
        assert params["lr"] == pytest.approx(want["lr"])
        # the reverse_log parameter is queued under the bridge's name, as u in [0, 1)
        u = params[f"beta_1{REVERSE_LOG_SUFFIX}"]
        assert "beta_1" not in params and 0 <= u <= 1
    assert [t.user_attrs["ablation"]["repeat"] for t in study.queued] == [0, 1, 0, 1]
    assert "Queued 4 ablation trials" in study.ablate_out
    assert f"budget {SEARCH_TRIALS} -> {SEARCH_TRIALS + 4}" in study.ablate_out


def test_the_worker_runs_the_ablation_trials_with_their_values_and_distinct_seeds(study):
    all_trials = trials(study.url)
    ablated = [t for t in all_trials if "ablation" in t.user_attrs]
    assert study.worker.trials == 4 and study.worker.complete == 4
    assert len(all_trials) == SEARCH_TRIALS + 4
    center = best_search_trial(all_trials).user_attrs["hp_values"]
    for t in ablated:
        used = t.user_attrs["hp_values"]
        assert t.state == TrialState.COMPLETE
        assert used["batch_size"] == t.user_attrs["ablation"]["value"]
        assert used["units"] == center["units"]
        assert used["beta_1"] == pytest.approx(center["beta_1"])  # decoded back through the bridge
    seeds = [t.user_attrs["seed"] for t in ablated]
    assert len(set(seeds)) == len(seeds)  # every repeat trains with its own seed


def test_analyze_json_separates_search_and_ablation_effects(study):
    code, out, err = invoke("analyze", "--study", "tiny", "--storage", study.url, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["overview"]["search_trials"] == SEARCH_TRIALS
    assert result["overview"]["ablation_trials"] == 4
    assert result["overview"]["budget"] == SEARCH_TRIALS + 4
    assert {p["name"] for p in result["parameters"]} == {"units", "lr", "batch_size", "beta_1"}
    search_rows = sum(r["trials"] for r in next(p for p in result["parameters"]
                                               if p["name"] == "batch_size")["rows"])
    assert search_rows == SEARCH_TRIALS  # the search table counts search trials only
    (ablation,) = result["ablation"]
    assert ablation["name"] == "batch_size"
    assert [r["value"] for r in ablation["rows"]] == [32, 64]
    assert [r["complete"] for r in ablation["rows"]] == [REPEATS, REPEATS]  # never pruned
    assert ablation["noise_sd"] is not None and ablation["verdict"].startswith("batch_size around")
    assert not err.strip()  # json and csv write no HTML unless --html is given


def test_analyze_csv_is_the_trials_table(study):
    code, out, err = invoke("analyze", "--study", "tiny", "--storage", study.url, "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(StringIO(out))
    assert len(frame) == SEARCH_TRIALS + 4
    assert {"number", "state", "value", "train_seconds", "trainable_params", "hp.units", "hp.lr",
            "hp.beta_1", "hp.batch_size", "ablation_param"} <= set(frame.columns)
    assert (frame["ablation_param"] == "batch_size").sum() == 4
    assert (frame["state"] == "COMPLETE").all()


def test_analyze_text_writes_the_report_by_default_without_importing_keras(study):
    code = textwrap.dedent(f"""
        import sys
        from search.cli import main
        try:
            main(["analyze", "--study", "tiny", "--storage", {study.url!r}])
        except SystemExit as exc:
            print("EXIT", exc.code)
        print("KERAS", "keras" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False,
                         cwd=study.root, env={"PYTHONPATH": str(REPO), "COLUMNS": "160",
                                              "PATH": "/usr/bin:/bin"})
    assert "EXIT 0" in out.stdout, out.stderr
    assert "KERAS False" in out.stdout  # reading a study costs no backend import
    text = out.stdout
    assert "Study tiny" in text and "Importance" in text
    for name in ("units", "lr", "batch_size", "beta_1"):
        assert f"{name} (" in text  # one effect table per parameter
    assert "Ablation: batch_size around" in text
    report = study.root / "reports" / "tiny.html"
    assert "HTML report: reports/tiny.html" in text
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Ablation (controlled" in html
    assert 'src="http' not in html


def test_analyze_html_path_and_no_html(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("analyze", "--study", "tiny", "--storage", study.url, "--format", "json",
                            "--html", tmp_path / "r" / "x.html", "--params", "lr,batch_size")
    assert code == 0, err
    assert [p["name"] for p in json.loads(out)["parameters"]] == ["lr", "batch_size"]
    assert (tmp_path / "r" / "x.html").stat().st_size > 100_000
    code, out, err = invoke("analyze", "--study", "tiny", "--storage", study.url, "--no-html")
    assert code == 0, err
    assert "lr (" in out and not (tmp_path / "reports").exists()


def test_ablate_queues_reverse_log_values_that_the_bridge_decodes(study):
    """Enqueued under `<name>.reverse_log_u`, the value the worker decodes is the planned one."""
    code, _, err = invoke("ablate", "--study", "tiny", "--storage", study.queued_url,
                          "--params", "beta_1", "--repeats", "1")
    assert code == 0, err
    waiting = optuna.load_study(study_name="tiny", storage=study.queued_url).get_trials(
        states=(TrialState.WAITING,))
    beta = [t for t in waiting if t.user_attrs["ablation"]["param"] == "beta_1"]
    hp = next(h for h in space_hyperparameters(prepare_config(study.queued_url)).space
              if h.name == "beta_1")
    decode = param_mapping(hp).decode
    planned = [t.user_attrs["ablation"]["value"] for t in beta]
    assert len(beta) == len(set(planned)) >= 5
    queued = [t.system_attrs["fixed_params"]["beta_1" + REVERSE_LOG_SUFFIX] for t in beta]
    assert [decode(u) for u in queued] == pytest.approx(planned)
    assert StudyRecords(open_storage(study.queued_url).engine).get("tiny").budget == \
        SEARCH_TRIALS + 4 + len(beta)


def prepare_config(url):
    from search.options import StudyConfig

    return StudyConfig.from_dict(StudyRecords(open_storage(url).engine).get("tiny").config)


@pytest.mark.parametrize("args, message", [
    (["analyze", "--study", "nope"], "no study named 'nope'"),
    (["analyze", "--study", "tiny", "--params", "nope"], "unknown parameter(s) nope"),
    (["analyze", "--study", "tiny", "--html", "."], "is a folder"),
    (["analyze", "--study", "tiny", "--params", ","], "expected names separated by commas"),
    (["ablate", "--study", "tiny", "--params", "nope"], "unknown parameter(s) nope"),
    (["ablate", "--study", "tiny", "--repeats", "0"], "--repeats must be at least 1"),
    (["ablate", "--study", "nope"], "no study named 'nope'"),
    (["best", "--study", "nope"], "no study named 'nope'"),
    (["best", "--study", "tiny", "--top", "0"], "--top must be at least 1"),
    (["best", "--study", "tiny", "--export", __file__], "is a file: give a folder"),
])
def test_bad_input_is_one_line(study, args, message):
    code, _, err = invoke(*args, "--storage", study.url)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_a_study_without_finished_trials_is_one_line(tmp_path):
    space = tmp_path / "tiny.py"
    space.write_text(SPACE)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    prepare(start_options(str(space), storage=url, trials=2, epochs=1))
    for command in ("analyze", "ablate", "best"):
        code, _, err = invoke(command, "--study", "tiny", "--storage", url)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0 and len(lines) == 1, err
        assert "no finished trials yet" in lines[0] or "no completed trials yet" in lines[0]


def test_the_fast_trial_reader_reads_what_optuna_reads(study):
    """storage.trial_reader (what `search analyze` reads with) against Optuna's own reader, on a
    study with every kind of row: values, params (a reverse-log one), user and system attributes
    (queued trials' fixed params), per-epoch intermediate values, waiting trials."""
    from search.storage.trial_reader import read_trials

    for url in (study.url, study.queued_url):
        store = open_storage(url)
        study_id = store.get_study_id_from_name("tiny")
        expected = store.get_all_trials(study_id, deepcopy=False)
        got = read_trials(store, study_id)
        assert got == expected and len(got) >= SEARCH_TRIALS + 4
        assert any(t.intermediate_values for t in got) and any(t.system_attrs for t in got)
