"""Secrets and the trust boundary.

- A storage URL's password is never printed, logged, stored (every table of the store is read
  back and searched), put on a worker's command line (visible to every user of the machine), or
  shown in the analysis (terminal, JSON, HTML report); it is masked as ``***`` where the URL is
  shown (the masking itself: tests/unit/storage/test_engine.py; a local worker's command line:
  tests/unit/execution/test_pool.py).
- It can stay out of the URL: ``~/.pgpass`` (``PGPASSFILE``) or a service file (``PGSERVICEFILE``).
- The compose file's passwords live in an env file git ignores, and the workers' role cannot
  change the schema: tests/e2e/test_docker.py (test_no_password_is_committed,
  test_the_workers_role_uses_rows_and_cannot_change_the_schema).
- Workers execute the space source stored in the study: ``search worker --space FILE`` refuses to
  run a stored source that is not FILE's, and runs when it is; so does ``search best --evaluate
  --space FILE``. A second process writing the store (the artifact store, the checkpoint index)
  cannot make a pinned worker read, write or delete a file outside the study's artifact store.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy
from click.testing import CliRunner

from search import storage
from search.cli import main
from search.testing.cli import REPO, error_lines
from search.testing.spaces import TINY_SPACE
from search.testing.studies import trials_of, wait_for, worker_rows


def every_row(url: str) -> str:
    """The whole content of a store (every row of every table) as one text."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            text = []
            for table in sqlalchemy.inspect(conn).get_table_names():
                rows = conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')).fetchall()
                text.append(f"{table}: {rows!r}")
            return "\n".join(text)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_password_is_never_printed_stored_or_on_a_command_line(postgres_server, tiny_space,
                                                                    tmp_path):
    password = postgres_server.password
    url = postgres_server.url(postgres_server.create_database())
    assert password in url
    masked = url.replace(password, "***")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("SEARCH_STORAGE", None)
    proc = subprocess.Popen(  # in a folder of its own: whatever it writes beside the store stays there
        [sys.executable, "-m", "search", "start", str(tiny_space), "--storage", url, "--trials", "2",
         "--epochs", "1", "--workers", "1", "--trial-timeout", "300"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = wait_for(lambda: worker_rows(url), 150, "a worker", proc)
    cmdline = Path(f"/proc/{rows[0].pid}/cmdline")
    seen_cmdline = cmdline.read_bytes().decode(errors="replace") if cmdline.exists() else ""
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert masked in out  # "Created study tiny in postgresql://search:***@..."
    outputs = [out, err, seen_cmdline]
    logged = io.StringIO()  # every log record of the commands below, at every level
    handler = logging.StreamHandler(logged)
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.DEBUG
    try:
        for args in (["status"], ["status", "--study", "tiny"],
                     ["status", "--study", "tiny", "--format", "json"],
                     ["worker", "--study", "tiny"],
                     ["analyze", "--study", "tiny", "--html", str(tmp_path / "report.html")],
                     ["analyze", "--study", "tiny", "--format", "json"],
                     ["status", "--study", "nope"]):
            result = CliRunner().invoke(main, [*args, "--storage", url])
            outputs += [result.stdout, result.stderr]
    finally:
        root.removeHandler(handler)
        root.level = level
    outputs.append(logged.getvalue())
    assert "budget spent" in outputs[-9] and "no study named 'nope' in " + masked in outputs[-2]
    outputs.append((tmp_path / "report.html").read_text(encoding="utf-8"))  # the HTML report
    for text in outputs:
        assert password not in text
    stored = every_row(url)
    assert "tiny" in stored and "search_studies" in stored and "trials" in stored
    assert password not in stored  # no table holds it: configuration, user or system attrs, workers


@pytest.mark.parametrize("how", ["pgpass", "service"])
def test_the_password_can_stay_out_of_the_url(postgres_server, tmp_path, monkeypatch, how):
    host, port, user = "127.0.0.1", postgres_server.port, "search"
    database = postgres_server.create_database()
    if how == "pgpass":
        secret = tmp_path / "pgpass"
        secret.write_text(f"{host}:{port}:{database}:{user}:{postgres_server.password}\n")
        secret.chmod(0o600)  # libpq ignores a password file others can read
        monkeypatch.setenv("PGPASSFILE", str(secret))
        url = f"postgresql://{user}@{host}:{port}/{database}"
    else:
        secret = tmp_path / "pg_service.conf"
        secret.write_text(f"[search]\nhost={host}\nport={port}\ndbname={database}\nuser={user}\n"
                          f"password={postgres_server.password}\n")
        secret.chmod(0o600)
        monkeypatch.setenv("PGSERVICEFILE", str(secret))
        url = "postgresql:///?service=search"
    monkeypatch.setenv("SEARCH_STORAGE", url)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.stderr
    assert "No studies in this store yet" in result.stdout
    store = storage.open_storage(url)  # as `search start` opens it: Optuna's tables, then ours
    storage.StudyRecords(store.engine)
    assert {"search_studies", "trials"} <= set(sqlalchemy.inspect(store.engine).get_table_names())
    store.engine.dispose()


# --------------------------------------------------------------------------- trust boundary

PAYLOAD = "\nimport pathlib\npathlib.Path({marker!r}).write_text('the stored source ran')\n"


def tiny_study(tmp_path: Path) -> tuple[Path, str]:
    """The tiny space written to tmp_path and its study created in a SQLite store there, as
    ``search start`` creates it (no trial run): (space file, store URL)."""
    from search.commands.start import prepare
    from search.options import start_options

    space = tmp_path / "tiny.py"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    prepare(start_options(str(space), storage=url, trials=1, epochs=1)) \
        .stored.storage.engine.dispose()
    return space, url


@pytest.fixture
def tampered(tmp_path):
    """A study whose stored space source was changed in the store after it was created."""
    space, url = tiny_study(tmp_path)
    db = tmp_path / "store.db"
    marker = tmp_path / "ran.txt"
    with sqlite3.connect(db) as conn:  # what anyone with write access to the store can do
        conn.execute("UPDATE search_studies SET space_source = space_source || ?",
                     (PAYLOAD.format(marker=str(marker)),))
    return space, url, db, marker


def test_worker_space_refuses_a_stored_source_that_is_not_the_file(tampered):
    space, url, db, marker = tampered
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT * FROM trials").fetchall(), conn.execute(
            "SELECT * FROM search_workers").fetchall()
    result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--space", str(space),
                                       "--storage", url])
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: refusing to run study 'tiny': the space source stored with "
                               "it (sha256 ")
    assert f"is not --space {space} (sha256 " in lines[0]
    assert not marker.exists()  # the stored code was not executed
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT * FROM trials").fetchall(), conn.execute(
            "SELECT * FROM search_workers").fetchall()
    assert after == before  # not even registered as a worker
    # without --space the worker runs what the store holds: that is the trust boundary
    result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--storage", url])
    assert result.exit_code == 0, result.stderr
    assert marker.read_text() == "the stored source ran"


def test_worker_space_runs_when_the_stored_source_is_the_file(tmp_path):
    _, url = tiny_study(tmp_path)
    elsewhere = tmp_path / "copy" / "tiny.py"  # the same source under another path is fine
    elsewhere.parent.mkdir()
    elsewhere.write_text(TINY_SPACE)
    result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--space", str(elsewhere),
                                       "--storage", url])
    assert result.exit_code == 0, result.stderr
    assert "budget spent: ran 1 trials (1 complete" in result.stdout
    missing = CliRunner().invoke(main, ["worker", "--study", "tiny", "--space", str(tmp_path / "no.py"),
                                        "--storage", url])
    assert missing.exit_code == 1 and "does not exist" in error_lines(missing)[0]


def test_status_json_holds_no_url(tmp_path):
    """Nothing the CLI prints about a study carries the store's URL except the masked header."""
    _, url = tiny_study(tmp_path)
    payload = json.loads(CliRunner().invoke(main, ["status", "--study", "tiny", "--storage", url,
                                                  "--format", "json"]).stdout)
    assert "store.db" not in json.dumps(payload)


def test_best_evaluate_space_refuses_a_stored_source_that_is_not_the_file(tampered):
    space, url, db, marker = tampered
    result = CliRunner().invoke(main, ["best", "--study", "tiny", "--evaluate", "--space", str(space),
                                       "--storage", url])
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: refusing to run study 'tiny'"), result.stderr
    assert f"is not --space {space} (sha256 " in lines[0]
    assert not marker.exists()  # the stored code was not executed


def test_slurm_space_refuses_before_submitting_and_pins_every_task(tampered, tmp_path):
    space, url, db, marker = tampered
    script = tmp_path / "jobs" / "tiny.sbatch"
    args = ["slurm", "--study", "tiny", "--storage", url, "--gpus-per-worker", "0", "--script",
            str(script), "--dry-run", "--space", str(space)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: refusing to run study 'tiny'"), result.stderr
    assert not script.exists()  # refused before any script was written
    (tmp_path / "clean").mkdir()
    _, clean_url = tiny_study(tmp_path / "clean")  # the same source, untouched in its store
    args[4] = clean_url
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert script.read_text().rstrip().endswith(f"--study tiny --space {space.absolute()}")


def first_use_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("note: running the space source")]


def test_the_first_unpinned_run_of_a_stored_source_is_said_once(tmp_path, monkeypatch):
    """worker and best --evaluate say, before running it, that they run the stored source the
    first time they do here for this store, study and source; never again for the same, again
    once the stored source changes; never with --space. ablate runs no stored code and says
    nothing."""
    from search.space.source import source_sha256

    space, url = tiny_study(tmp_path)

    def note(source: str) -> str:
        return (f"note: running the space source stored in {url} for study 'tiny' (sha256 "
                f"{source_sha256(source)[:12]}) on this machine for the first time: whoever can "
                "write to that store chooses this code; pin it with --space FILE")

    def invoke(*args):
        result = CliRunner().invoke(main, [*args, "--storage", url])
        assert result.exit_code == 0, result.stderr
        return result

    first = invoke("worker", "--study", "tiny")
    assert first_use_lines(first.stdout) == [note(TINY_SPACE)]
    assert first.stdout.index("note: running") < first.stdout.index("trial 0")  # said before it ran
    again = invoke("worker", "--study", "tiny")
    assert first_use_lines(again.stdout + again.stderr) == []
    # best --evaluate shares what this user has seen: a fresh config folder has seen nothing
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh"))
    best = invoke("best", "--study", "tiny", "--evaluate", "--format", "json")
    assert first_use_lines(best.stderr) == [note(TINY_SPACE)]
    assert json.loads(best.stdout)["notes"] == [note(TINY_SPACE).removeprefix("note: ")]  # stdout stays JSON
    best = invoke("best", "--study", "tiny", "--evaluate")
    assert first_use_lines(best.stdout + best.stderr) == []
    # pinned: nothing said, nothing remembered
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "pinned"))
    for args in (["worker", "--study", "tiny"], ["best", "--study", "tiny", "--evaluate"]):
        pinned = invoke(*args, "--space", str(space))
        assert first_use_lines(pinned.stdout + pinned.stderr) == []
    assert not (tmp_path / "pinned").exists()
    # the stored source changed by whoever writes the store: said again, with its new hash
    marker = tmp_path / "ran.txt"
    payload = PAYLOAD.format(marker=str(marker))
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute("UPDATE search_studies SET space_source = space_source || ?", (payload,))
    ablated = invoke("ablate", "--study", "tiny", "--params", "units", "--repeats", "1")
    assert not marker.exists()  # queueing trials runs no stored code
    assert first_use_lines(ablated.stdout + ablated.stderr) == []
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh"))
    changed = invoke("worker", "--study", "tiny")
    assert first_use_lines(changed.stdout) == [note(TINY_SPACE + payload)]
    assert marker.exists()


def test_a_worker_with_several_slots_says_it_once_for_all_of_them(tmp_path):
    """Its coordinator says it, once, before it starts the pool."""
    _, url = tiny_study(tmp_path)
    result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--per-gpu", "2", "--storage", url])
    assert result.exit_code == 0, result.stderr
    assert len(first_use_lines(result.stdout + result.stderr)) == 1, result.stdout
    again = CliRunner().invoke(main, ["worker", "--study", "tiny", "--per-gpu", "2", "--storage", url])
    assert again.exit_code == 0 and first_use_lines(again.stdout + again.stderr) == []


# Run as a second process: what anyone who can write the store can do to it, through Optuna's
# own storage and the study's row: point the artifact store at another folder (argv[3]) when
# given, and add checkpoint index entries whose artifact ids are paths (argv[2] is the victim).
STORE_WRITER = textwrap.dedent('''
    import json, sys
    import optuna, sqlalchemy
    url, victim = sys.argv[1], sys.argv[2]
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name("tiny")
    for number, artifact_id in ((900, "precious.txt"), (901, f"../{victim.rsplit('/', 1)[1]}/precious.txt"),
                                (902, f"{victim}/precious.txt")):
        storage.set_study_system_attr(study_id, f"search:checkpoint:{number}",
                                      {"value": 0.0, "artifact_id": artifact_id, "epoch": 0})
    if len(sys.argv) > 3:
        with storage.engine.begin() as conn:
            config = json.loads(conn.execute(sqlalchemy.text(
                "SELECT config_json FROM search_studies")).scalar_one())
            config["artifacts"] = sys.argv[3]
            conn.execute(sqlalchemy.text("UPDATE search_studies SET config_json = :c"),
                         {"c": json.dumps(config, sort_keys=True)})
    storage.engine.dispose()
''')


def test_a_store_writer_cannot_make_a_pinned_worker_touch_files_outside_the_study(tmp_path):
    from search.commands.start import prepare
    from search.options import start_options

    space = tmp_path / "tiny.py"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    kept = tmp_path / "checkpoints"
    prepare(start_options(str(space), storage=url, trials=2, epochs=1, keep_best=1,
                         artifacts=str(kept))).stored.storage.engine.dispose()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")

    def victim_untouched():
        assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
        assert (victim / "precious.txt").read_text() == "keep me"

    def write_the_store(*args):
        done = subprocess.run([sys.executable, "-c", STORE_WRITER, url, str(victim), *args],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    write_the_store(str(victim))  # the artifact store moved to the victim's folder
    for pins in ([], ["--artifacts", str(kept)]):
        result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--space", str(space),
                                           "--storage", url, *pins])
        assert result.exit_code == 1
        lines = error_lines(result)
        assert len(lines) == 1 and lines[0].startswith("error: refusing to run study 'tiny'"), \
            result.stderr
        assert f"checkpoints in {victim}" in lines[0]
        victim_untouched()
    assert trials_of(url)[0].state.name == "WAITING"  # nothing ran

    write_the_store(str(kept))  # the artifact store back, the index entries still paths
    result = CliRunner().invoke(main, ["worker", "--study", "tiny", "--space", str(space),
                                       "--artifacts", str(kept), "--storage", url])
    assert result.exit_code == 0, result.stderr
    assert "budget spent: ran 2 trials (2 complete" in result.stdout
    victim_untouched()
    files = list(kept.iterdir())  # the best trial's checkpoint, under its artifact id
    best = max((t for t in trials_of(url)), key=lambda t: t.value)
    assert [f.name for f in files] == [best.user_attrs["checkpoint"]["artifact_id"]]
