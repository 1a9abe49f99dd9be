"""The bad-input catalogue (README "Troubleshooting"): each case ends with one line on stderr
that names what is wrong and what to do, a non-zero exit, and the store unchanged (every table
of a store holding a finished study compared row by row before and after).

Most cases fail before any training, so they run in this process through the CLI's own entry
point (click's runner: the same parsing, messages and exit codes as the ``search`` command).

Cases tested elsewhere (not repeated):

- ``--set`` of an unknown name, a value outside the space, no ``=``:
  tests/e2e/test_study.py::test_bad_set_is_one_line_and_creates_nothing
- resuming with a different space file: tests/e2e/test_study.py::
  test_resume_with_changed_space_is_refused_and_touches_nothing; with a contradicting option:
  test_resume_with_contradicting_option_is_refused
- ``--gpus`` malformed, ``--grace`` not above ``--heartbeat``:
  tests/e2e/test_workers.py::test_bad_worker_options_are_one_line
- a configuration that fails only some trials (OOM, NaN, build error): the trial fails with its
  reason, the study goes on (tests/e2e/test_study.py, tests/e2e/test_workers.py)
- ``search worker --space FILE`` whose stored source differs: tests/e2e/test_secrets.py
- ``analyze``/``ablate``/``best`` options (unknown parameter, ``--html`` a folder, ``--top 0``, ...)
  and ``ablate``/``best`` of a study without finished trials: tests/e2e/test_cli_analysis.py
- the HTML report's escaping of a study name, values and a failure reason on a synthetic study:
  tests/unit/analysis/test_report.py::test_user_strings_appear_only_escaped (here: the same through the CLI, and
  the terminal's markup)
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

from search.cli import main
from search.testing.cli import REPO, error_lines, popen_cli
from search.testing.faults import assert_requeued_and_kept, interrupt_a_sleeping_trial
from search.testing.spaces import TINY_SPACE
from search.testing.studies import wait_for

CLASSES_SPACE = TINY_SPACE.replace("ds = data.current()",
                                   'ds = data.current(classes=hp.Choice("classes", [20, 40]))')

FILES = {
    "tiny.py": TINY_SPACE,
    "notes.txt": "not a space\n",
    "broken.py": "def build(hp):\n    return (\n",
    "empty.py": "DATA = 'digits'\n",
    "imports.py": "import no_such_module_here\n",
    "always_fails.py": "def build(hp):\n    raise RuntimeError('no model for any configuration')\n",
    "classes.py": CLASSES_SPACE,
    "data.csv": "x,y\n1,2\n",
    "corrupt.npz": "this is not a zip file",
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A store with a finished study ``tiny`` (2 trials, trained here), and the case files."""
    from search import api
    from search.commands.start import prepare
    from search.options import start_options

    root = tmp_path_factory.mktemp("catalogue")
    for name, text in FILES.items():
        (root / name).write_text(text)
    np.savez(root / "unlabelled.npz", x_train=np.zeros((4, 8, 8), dtype=np.uint8))
    images = np.zeros((40, 8, 8), dtype=np.uint8)
    np.savez(root / "text_labels.npz", x_train=images, y_train=np.array(["cat", "dog"] * 20))
    np.savez(root / "signed_labels.npz", x_train=images, y_train=np.arange(40) % 3 - 1)
    np.savez(root / "one_class.npz", x_train=images, y_train=np.zeros(40, dtype=np.int64))
    np.savez(root / "nan_pixels.npz", x_train=np.full((40, 8, 8), np.nan), y_train=np.arange(40) % 4)
    url = f"sqlite:///{root / 'seed.db'}"
    prepared = prepare(start_options(str(root / "tiny.py"), storage=url, trials=2,
                                    epochs=1, pruner="none"))
    prepared.stored.storage.engine.dispose()
    report = api.worker("tiny", storage=url)
    assert report.complete == 2
    return root


def dump(path) -> dict[str, list[str]]:
    """Every row of every table, as text (the store's whole content)."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"')) for t in tables}


@pytest.fixture
def store(seeded, tmp_path):
    """A copy of the seeded store for one case: its URL and its content before the case."""
    path = tmp_path / "store.db"
    with sqlite3.connect(seeded / "seed.db") as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    before = dump(path)
    assert len(before["trials"]) == 2 and len(before["search_studies"]) == 1
    return path, before


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line(result) -> str:
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


CASES = [
    # (id, arguments ({d}: the case files, {db}: the store's URL), what the line says)
    ("space-missing", ["start", "{d}/nowhere.py"], "space file {d}/nowhere.py does not exist"),
    ("space-not-python", ["start", "{d}/notes.txt"], "is not a Python file (.py)"),
    ("space-syntax-error", ["start", "{d}/broken.py"], "broken.py: syntax error at line 2"),
    ("space-import-fails", ["start", "{d}/imports.py"],
     "importing the space raised ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("space-no-hypermodel", ["start", "{d}/empty.py"],
     "defines no hypermodel: add build(hp), a keras_tuner.HyperModel subclass or HYPERMODEL"),
    ("build-always-fails", ["start", "{d}/always_fails.py"],
     "build() raised RuntimeError: no model for any configuration; nothing was stored"),
    ("trials-zero", ["start", "{d}/tiny.py", "--study", "other", "--trials", "0"],
     "--trials must be at least 1 (got 0)"),
    ("trials-negative", ["start", "{d}/tiny.py", "--study", "other", "--trials", "-5"],
     "--trials must be at least 1 (got -5)"),
    ("epochs-zero", ["start", "{d}/tiny.py", "--study", "other", "--epochs", "0"],
     "--epochs must be at least 1"),
    ("unknown-sampler", ["start", "{d}/tiny.py", "--sampler", "bayes"],
     "Invalid value for '--sampler': 'bayes' is not one of 'tpe', 'random', 'grid'"),
    ("unknown-pruner", ["start", "{d}/tiny.py", "--pruner", "sometimes"],
     "Invalid value for '--pruner': 'sometimes' is not one of 'none', 'median'"),
    ("trial-timeout-zero", ["start", "{d}/tiny.py", "--study", "other", "--trial-timeout", "0"],
     "--trial-timeout must be a positive number of seconds"),
    ("timeout-nan", ["start", "{d}/tiny.py", "--study", "other", "--timeout", "nan"],
     "--timeout must be a positive number of seconds (got nan)"),
    ("trials-beyond-the-store", ["start", "{d}/tiny.py", "--study", "other", "--trials", str(10**19)],
     "--trials must be at most 2147483647 (the store's integer"),
    ("workers-beyond-the-machine", ["start", "{d}/tiny.py", "--study", "other", "--workers", "1000"],
     "--workers 1000: this machine runs at most"),
    ("workers-beyond-memory", ["start", "{d}/tiny.py", "--study", "other", "--workers", str(10**12)],
     f"--workers {10**12}: this machine runs at most"),
    ("per-gpu-beyond-the-machine", ["start", "{d}/tiny.py", "--study", "other", "--per-gpu",
                                    str(10**12)], f"--per-gpu {10**12}: this machine runs at most"),
    ("worker-per-gpu-beyond-the-machine", ["worker", "--study", "tiny", "--per-gpu", str(10**6)],
     f"--per-gpu {10**6}: this machine runs at most"),
    ("seed-beyond-numpy", ["start", "{d}/tiny.py", "--study", "other", "--seed", str(2**32)],
     "--seed must be at most 4294967295 (the seeds NumPy takes; got 4294967296)"),
    ("seed-negative", ["start", "{d}/tiny.py", "--study", "other", "--seed", "-1"],
     "--seed must be at least 0 (got -1)"),
    ("keep-best-beyond-the-store", ["start", "{d}/tiny.py", "--study", "other", "--keep-best",
                                    str(10**12)], "--keep-best must be at most 2147483647"),
    ("max-retry-beyond-the-store", ["start", "{d}/tiny.py", "--study", "other", "--max-retry",
                                    str(10**12)], "--max-retry must be at most 2147483647"),
    ("ablation-beyond-the-store", ["ablate", "--study", "tiny", "--params", "units", "--repeats",
                                   str(10**12)], "the study has room for"),
    ("ablation-beyond-one-queue", ["ablate", "--study", "tiny", "--params", "units", "--repeats",
                                   str(10**6)], "one ablation queues at most 10000"),
    ("study-name-too-long", ["start", "{d}/tiny.py", "--study", "x" * 231],
     "it has 231 characters; a study name is 1 to 200 printable characters"),
    ("study-name-control-character", ["start", "{d}/tiny.py", "--study", "a\tb"],
     "it holds a control character"),
    ("data-missing", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/nowhere.npz"],
     "data file {d}/nowhere.npz does not exist"),
    ("data-unknown-format", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/data.csv"],
     "data.csv: unknown data format (expected an .npz file or a folder)"),
    ("data-not-npz", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/corrupt.npz"],
     "corrupt.npz: not an .npz file (not a zip archive): save the arrays with numpy.savez"),
    ("data-npz-without-labels", ["start", "{d}/tiny.py", "--study", "other", "--data",
                                 "{d}/unlabelled.npz"], "needs arrays x_train and y_train"),
    ("data-text-labels", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/text_labels.npz"],
     "y_train holds labels that are not numbers ('cat', 'dog', ...): labels must be integers 0..K-1"),
    ("data-signed-labels", ["start", "{d}/tiny.py", "--study", "other", "--data",
                            "{d}/signed_labels.npz"], "y_train holds labels from -1 to 1"),
    ("data-one-class", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/one_class.npz"],
     "y_train has a single class (0): a classifier needs two or more"),
    ("data-nan-pixels", ["start", "{d}/tiny.py", "--study", "other", "--data", "{d}/nan_pixels.npz"],
     "x_train holds 2560 NaN or infinite values (of 2560)"),
    ("data-unknown-name", ["start", "{d}/tiny.py", "--study", "other", "--data", "imagenet"],
     "unknown data set 'imagenet': use one of digits, mnist"),
    ("classes-above-the-data", ["start", "{d}/classes.py"],
     "classes=20 but digits has 10 classes (use 2..10)"),
    ("resize-below-the-base", ["start", str(REPO / "spaces/transfer.py"), "--data", "digits",
                               "--set", "base=xception", "--set", "weights=none", "--set", "resize=32"],
     "resize 32 is below xception's minimum input size 71: use a resize of at least 71 or another base"),
    ("status-unknown-study", ["status", "--study", "nope"],
     "no study named 'nope' in sqlite:///{db}: `search status` lists the studies there"),
    ("worker-unknown-study", ["worker", "--study", "nope"], "no study named 'nope' in sqlite:///"),
    ("analyze-unknown-study", ["analyze", "--study", "nope"], "no study named 'nope' in sqlite:///"),
    # user strings that look like terminal markup are shown as they are, not interpreted
    ("path-with-brackets", ["start", "{d}/[draft].py"], "space file {d}/[draft].py does not exist"),
    ("name-with-markup", ["status", "--study", "x[/bold]"], "no study named 'x[/bold]'"),
]


@pytest.mark.parametrize("case, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(store, seeded, case, args, message):
    path, before = store
    fill = {"d": str(seeded), "db": str(path)}
    result = run(*[a.format(**fill) for a in args], "--storage", f"sqlite:///{path}")
    assert result.exit_code != 0
    line = one_line(result)
    assert line.startswith("error: ") and message.format(**fill) in line, line
    assert result.stdout == ""
    assert dump(path) == before


def test_analysis_of_a_study_without_finished_trials_is_one_line(seeded, tmp_path):
    from search.commands.start import prepare
    from search.options import start_options

    path = tmp_path / "store.db"
    prepare(start_options(str(seeded / "tiny.py"), storage=f"sqlite:///{path}", trials=2,
                         epochs=1)).stored.storage.engine.dispose()
    before = dump(path)
    result = run("analyze", "--study", "tiny", "--storage", f"sqlite:///{path}", "--html",
                 str(tmp_path / "report.html"))
    assert result.exit_code != 0
    assert "study 'tiny' has no finished trials yet (1 waiting): nothing to analyze" in one_line(result)
    assert dump(path) == before and not (tmp_path / "report.html").exists()


MARKUP_SPACE = textwrap.dedent('''
    import keras
    from search import data
    def build(hp):
        ds = data.current()
        if hp.Choice("mode", ["[bold]ok", "<b>boom"]) == "<b>boom":
            raise ValueError("<script>alert(1)</script> [/red] [link=http://x]")
        model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(ds.num_classes, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
''')


def test_user_strings_are_shown_as_they_are_in_the_terminal_and_escaped_in_the_report(tmp_path):
    """A study name, hyperparameter values and a failure reason holding markup (rich's [tags],
    HTML) print literally in the terminal and appear only escaped in the HTML report
    (tests/unit/analysis/test_report.py checks the report's escaping on a synthetic study)."""
    import html

    from search import api
    from search.commands.start import prepare
    from search.options import start_options

    name = "digits <script>alert(1)</script> [/bold]"
    space = tmp_path / "markup.py"
    space.write_text(MARKUP_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepare(start_options(str(space), study=name, storage=url, trials=2, epochs=1,
                         sampler="grid")).stored.storage.engine.dispose()
    assert api.worker(name, storage=url).trials == 2
    reason = "build: ValueError: <script>alert(1)</script> [/red] [link=http://x]"
    status = run("status", "--study", name, "--storage", url)
    assert status.exit_code == 0, status.stderr
    flat = " ".join(status.stdout.split())
    assert f"Study {name}: 2 of 2 trials finished" in flat
    assert "mode=[bold]ok" in flat and "mode=<b>boom" in flat
    assert "[/red]" in flat and "[link=http://x]" in flat  # the reason, not swallowed as markup
    listing = run("status", "--storage", url)
    assert listing.exit_code == 0 and "[/bold]" in listing.stdout
    report = tmp_path / "report.html"
    analyzed = run("analyze", "--study", name, "--storage", url, "--html", str(report))
    assert analyzed.exit_code == 0, analyzed.stderr
    text = report.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text and "<b>boom" not in text
    assert html.escape(name) in text and html.escape(reason) in text


def test_a_storage_file_that_does_not_exist_is_named_not_created(tmp_path):
    path = tmp_path / "typo.db"
    for args in (["status", "--study", "tiny"], ["worker", "--study", "tiny"]):
        result = run(*args, "--storage", f"sqlite:///{path}")
        assert result.exit_code != 0
        assert f"no store at sqlite:///{path}: the file {path} does not exist" in one_line(result)
    listing = run("status", "--storage", f"sqlite:///{path}")
    assert listing.exit_code == 0 and "No studies in this store yet" in listing.stdout
    assert not path.exists()


def test_malformed_storage_url_shows_no_password():
    result = run("status", "--storage", "postgresql//search:hunter2@db-host/search")
    assert result.exit_code != 0
    line = one_line(result)
    assert "malformed storage URL 'postgresql//search:***@db-host/search'" in line
    assert "hunter2" not in result.output + result.stderr


def test_unreachable_postgres_fails_after_the_connect_timeout_not_a_hang():
    """A server that accepts the connection and never answers (a firewall, a hung host)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        url = f"postgresql://search:hunter2@127.0.0.1:{port}/search?connect_timeout=2"
        started = time.monotonic()
        result = run("status", "--study", "cnn", "--storage", url)
        took = time.monotonic() - started
    assert result.exit_code != 0
    line = one_line(result)
    assert took < 15, took
    assert f"cannot open the store postgresql://search:***@127.0.0.1:{port}/search" in line
    assert "timeout" in line and "check that the server is running and reachable" in line
    assert "hunter2" not in result.stderr


def test_refused_postgres_connection_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    result = run("worker", "--study", "cnn", "--storage", f"postgresql://search:pw@127.0.0.1:{port}/x")
    assert result.exit_code != 0
    assert "Connection refused; check that the server is running" in one_line(result)


def test_wrong_postgres_password_is_one_line(postgres_server):
    url = postgres_server.url("postgres", password="not-the-password")
    started = time.monotonic()
    result = run("status", "--storage", url)
    assert result.exit_code != 0
    line = one_line(result)
    assert 'password authentication failed for user "search"' in line
    assert "check the user and password" in line and "not-the-password" not in line
    assert time.monotonic() - started < 15  # not retried as if the server were down


# --------------------------------------------------------------------------- Ctrl-C twice


@pytest.mark.slow
def test_ctrl_c_twice_stops_at_once(tmp_path):
    """The first Ctrl-C waits for the end of the epoch; a second one does not: the coordinator
    exits promptly with 130, its workers are gone, the running trial is queued again with the same
    parameters, and every completed trial is kept."""
    url, proc, out, err, took, before, sleeping, pids = interrupt_a_sleeping_trial(
        tmp_path, [signal.SIGINT, signal.SIGINT])
    assert proc.returncode == 130, err[-3000:]
    lines = error_lines(subprocess.CompletedProcess([], 130, out, err))
    assert len(lines) == 1 and lines[0].startswith("error: interrupted: finished trials are kept"), err
    assert took < 60  # the trial in its (300 s) epoch was stopped, not waited for
    assert_requeued_and_kept(url, before, sleeping, pids)


@pytest.mark.slow
def test_ctrl_c_while_the_space_loads_says_no_trial_ran(tmp_path):
    """A space whose import hangs (a download, a lock): Ctrl-C says what happened, and speaks of
    no finished trials where no study started."""
    marker = tmp_path / "importing"
    space = tmp_path / "hangs.py"
    space.write_text(f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(600)\n"
                     + TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    proc = popen_cli("start", str(space), "--storage", url)
    wait_for(marker.exists, 120, "the space's import", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = error_lines(subprocess.CompletedProcess([], 130, out, err))
    assert lines == ["error: interrupted while preparing the study (loading the space and its "
                     "data): no trial ran"], err
    listing = run("status", "--storage", url)
    assert "No studies in this store yet" in listing.stdout


def test_the_catalogue_is_in_the_readme():
    """Every case above has its line in the README's troubleshooting section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    for fragment in ["does not exist", "is not a Python file", "syntax error", "defines no hypermodel",
                     "build() raised", "--trials must be at least 1", "Invalid value for '--sampler'",
                     "Invalid value for '--pruner'", "malformed storage URL", "connection timeout expired",
                     "password authentication failed", "no study named", "different source",
                     "unknown data format", "classes=20 but digits has 10 classes",
                     "below xception's minimum input size", "interrupted: finished trials are kept",
                     "--set", "no store at", "refusing to run study", "--trial-timeout",
                     "has no finished trials yet", "markup", "one ablation queues at most"]:
        assert fragment in section, fragment



def test_a_storage_port_that_is_not_a_number_is_one_line():
    result = run("status", "--storage", "postgresql://search:hunter2@db-host:abc/search")
    assert result.exit_code != 0
    line = one_line(result)
    assert "malformed storage URL 'postgresql://search:***@db-host:abc/search': its port is not a " \
           "number" in line
    assert "hunter2" not in result.stderr


@pytest.mark.slow
def test_a_study_name_with_a_slash_runs_and_names_its_own_report(seeded, tmp_path):
    """A name is any printable text: ``team/a`` runs through the local workers (their log folder
    is named after it), and its default report is a file of its own, as is ``..``'s."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for name in ("team/a", ".."):
        started = subprocess.run(
            [sys.executable, "-m", "search", "start", str(seeded / "tiny.py"), "--study", name,
             "--storage", url, "--trials", "1", "--epochs", "1"],
            capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
        assert started.returncode == 0, started.stderr
        analyzed = subprocess.run([sys.executable, "-m", "search", "analyze", "--study", name,
                                   "--storage", url], capture_output=True, text=True, cwd=tmp_path,
                                  timeout=300, check=False)
        assert analyzed.returncode == 0, analyzed.stderr
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["%2E..html", "team%2Fa.html"]
