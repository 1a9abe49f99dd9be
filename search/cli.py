"""The ``search`` command line: parses, calls ``search.api``, prints through ``search.console``.

Nothing else happens here: the options of ``search start`` are built from
``search.options.START_OPTIONS``, every check lives in the API, and a user error (``SearchError``,
a store that fails) becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.markup import escape

import search  # noqa: F401  (sets the backend's log level before anything imports it)
from search.errors import SearchError
from search.options import (
    OPTIONS,
    START_OPTIONS,
    WORKER_OPTIONS,
    OptionError,
    option_flag,
)

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1):
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _run(fn):
    """Call ``fn``; user errors (``SearchError``, ``StoreError``) become one line on stderr and a
    non-zero exit."""
    try:
        return fn()
    except OptionError as exc:
        _fail(exc.as_flag())
    except SearchError as exc:
        _fail(str(exc))
    except Exception as exc:
        from search.storage import StoreError  # (a store's errors: imported once there is one)

        if isinstance(exc, StoreError):
            _fail(str(exc))
        raise


def _parse_set(values: tuple[str, ...]) -> dict:
    fixed = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            _fail(f"--set {item!r}: expected NAME=VALUE")
        fixed[name.strip()] = value.strip()
    return fixed


def _parse_sweep(values: tuple[str, ...]) -> dict:
    sweep = {}
    for item in values:
        name, sep, listed = item.partition("=")
        swept = [v.strip() for v in listed.split(",") if v.strip()]
        if not sep or not name.strip() or not swept:
            _fail(f"--sweep {item!r}: expected NAME=VALUE,VALUE,..., e.g. classes=3,6,10")
        if name.strip() in sweep:
            _fail(f"--sweep {name.strip()} is given twice: list its values once, e.g. {name.strip()}=3,6,10")
        sweep[name.strip()] = swept
    return sweep


def _parse_names(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        _fail(f"{option} {value!r}: expected names separated by commas, e.g. lr,optimizer")
    return names


class _OneLineErrors(click.Group):
    """Click's usage errors (a bad option value, a missing argument) as one line on stderr."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as exc:
            _fail(exc.format_message().splitlines()[0], exc.exit_code)
        except click.Abort:
            _fail("aborted", 130)
        sys.exit(code if isinstance(code, int) else 0)


def _print_version(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from search.versions import versions

    found = versions()
    click.echo(f"search {found.pop('search')} (Keras backend: {found.pop('backend')})")
    click.echo(", ".join(f"{name} {version}" for name, version in found.items()))
    ctx.exit()


@click.group(cls=_OneLineErrors)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the versions of search, Keras, its backend, Optuna and Keras Tuner.")
@click.option("--verbose", is_flag=True,
              help="Also show the libraries' start-up lines and INFO logs (here and in workers).")
def main(verbose):
    """Hyperparameter search for Keras: Keras Tuner spaces, Optuna studies, many workers."""
    from search.logs import VERBOSE_ENV, configure_logging

    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # the workers this process starts inherit it
    configure_logging()


def _option(name: str):
    """The click option of a start option (``search.options``): its flag, type, help."""
    option = OPTIONS[name]
    kind = click.Choice(option.choices) if option.choices else option.type
    return click.option(option_flag(name), name, type=kind, default=None, metavar=option.metavar,
                        help=option.help)


def _options(names):
    def decorate(fn):
        for name in reversed(list(names)):
            fn = _option(name)(fn)
        return fn
    return decorate


@main.command()
@click.argument("space_file", required=False)
@_options(o.name for o in START_OPTIONS)
@click.option("--set", "set_values", multiple=True, metavar="NAME=VALUE", help="Fix a hyperparameter.")
@click.option("--sweep", "sweep_values", multiple=True, metavar="NAME=V1,V2,...",
              help="Sweep a hyperparameter as a condition: trials take its values in turn, the "
                   "search runs within each, and analyze reports each (e.g. classes=3,6,10).")
def start(space_file, set_values, sweep_values, **options):
    """Create (or resume) a study of SPACE_FILE and run it to its budget."""
    from search import api
    from search.console.progress import StudyProgress, next_command, prepared_lines, resume_command
    from search.console.status import print_study

    if space_file is None or os.path.isdir(space_file):
        _list_spaces(space_file)
    fixed = _parse_set(set_values)
    sweep = _parse_sweep(sweep_values)
    progress = StudyProgress(console)
    shown = {}

    def storage():  # as given, its password masked
        from search.storage import mask_url

        return mask_url(options["storage"]) if options["storage"] else None

    def on_prepared(prepared):
        for line in prepared_lines(prepared, options["timeout"]):
            console.print(line, highlight=False)
        shown["notes"] = len(prepared.notes)
        shown["study"] = prepared.study_name
        progress.start(prepared.stored.record.budget, workers=prepared.workers)

    try:
        result = _run(lambda: api.start(space_file, fixed=fixed, sweep=sweep, on_prepared=on_prepared,
                                        on_progress=progress.update, **options))
    except KeyboardInterrupt as exc:
        progress.stop()
        terminated = type(exc).__name__ == "Terminated"  # SIGTERM (search.execution.pool.Terminated)
        stopped = "terminated" if terminated else "interrupted"
        if "study" not in shown:  # still loading the space and its data: no study is running
            _fail(f"{stopped} while preparing the study (loading the space and its data): no trial ran",
                  code=143 if terminated else 130)
        given = dict(options, storage=storage())
        _fail(f"{stopped}: finished trials are kept; interrupted ones run again on resume: "
              + resume_command(space_file, shown["study"], given, fixed, option_flag),
              code=143 if terminated else 130)
    progress.stop()
    for note in result.notes[shown["notes"]:]:
        console.print(f"note: {escape(note)}", highlight=False)
    print_study(console, result.snapshot)
    console.print(escape(next_command(result.study_name, storage())), highlight=False)


def _list_spaces(folder: str | None) -> None:
    """``search start`` without a space file (or with a folder): the spaces there and an example."""
    from pathlib import Path

    where = Path(folder) if folder else Path("spaces")
    if not where.is_dir() and folder is None:
        where = Path(__file__).resolve().parent.parent / "spaces"  # the checkout's own spaces
    found = sorted(where.glob("*.py")) if where.is_dir() else []
    if not found:
        _fail("give a space file: search start SPACE_FILE (a .py file defining build(hp) or a "
              "keras_tuner.HyperModel)", code=2)
    err_console.print(f"give a space file; the spaces in {where}:", highlight=False)
    for path in found:
        err_console.print(f"  {escape(str(path))}: {escape(_first_line(path))}", highlight=False,
                          soft_wrap=True)
    example = next((p for p in found if p.name == "cnn.py"), found[0])
    err_console.print(f"for example: search start {escape(str(example))} --trials 4 --epochs 5",
                      highlight=False, soft_wrap=True)
    sys.exit(2)


def _first_line(path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8-sig"))) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())  # its first paragraph, on one line


@main.command()
@click.option("--study", required=True, help="Study name.")
@_options(WORKER_OPTIONS)
@click.option("--space", "space_file", default=None, metavar="FILE",
              help="Run only if the space source stored with the study is this file's.")
@click.option("--data", default=None, metavar="NAME_OR_PATH",
              help="Run only if the study reads this data (with --space: needed for a data path).")
@click.option("--artifacts", default=None, metavar="PATH|s3://BUCKET[/PREFIX]",
              help="Run only if the study keeps its checkpoints there (with --space: needed where "
                   "the study names its artifact store).")
def worker(study, storage, gpus, per_gpu, space_file, data, artifacts):
    """Attach to a study and take trials until its budget is spent.

    Needs only the store and the study name: the study carries its configuration and the source
    of its space. One worker process per GPU (--gpus, --per-gpu), or one CPU worker. With
    --space FILE it refuses to run unless the stored source is exactly FILE's: whoever can write
    to the store decides what code the workers run.
    """
    from search import api
    from search.console.progress import trial_line

    def on_trial(trial):
        console.print(escape(trial_line(trial)), highlight=False)

    def on_note(note):
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)

    try:
        report = _run(lambda: api.worker(study, storage=storage, gpus=gpus, per_gpu=per_gpu,
                                         space=space_file, data=data, artifacts=artifacts,
                                         on_trial=on_trial, on_note=on_note,
                                         restart_when_stuck=True))
    except KeyboardInterrupt:
        _fail("interrupted: the running trial was queued again with the same parameters", code=130)
    if report.interrupted:
        console.print(f"stopped: this worker ran {report.trials} trials; the running one was "
                      "queued again with the same parameters")
        sys.exit(130)
    console.print(f"budget spent: ran {report.trials} trials "
                  f"({report.complete} complete, {report.pruned} pruned, {report.failed} failed)")


@main.command()
@click.option("--study", required=True, help="Study name (created by `search start`).")
@_option("storage")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers: one Slurm array task each.")
@click.option("--gpus-per-worker", type=click.IntRange(min=0), default=1, show_default=True,
              help="GPUs per worker (--gres=gpu:N); 0: CPU workers.")
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU cores per worker (--cpus-per-task).")
@click.option("--mem", default=None, metavar="SIZE", help="Memory per worker (--mem, e.g. 16G).")
@click.option("--time", "time_limit", default=None, metavar="D-HH:MM:SS",
              help="Time limit per worker (--time).")
@click.option("--partition", default=None, help="Slurm partition (--partition).")
@click.option("--sbatch-option", "sbatch_options", multiple=True, metavar="OPTION",
              help="Another #SBATCH line, e.g. --sbatch-option=--account=lab (repeatable).")
@click.option("--script", default=None, metavar="FILE",
              help="Where to write the batch script (default: slurm/<study>.sbatch).")
@click.option("--dry-run", is_flag=True, help="Write the batch script, do not submit it.")
@click.option("--space", default=None, metavar="FILE",
              help="Every worker runs only if the stored space source is this file's (as "
                   "`search worker --space`; the file must be at this path where the tasks run).")
@click.option("--data", default=None, metavar="NAME_OR_PATH",
              help="Every worker runs only if the study reads this data.")
@click.option("--artifacts", default=None, metavar="PATH|s3://BUCKET[/PREFIX]",
              help="Every worker runs only if the study keeps its checkpoints there.")
def slurm(study, storage, **options):
    """Submit a Slurm job array of workers on a study, one GPU each.

    The batch script is written to a file and submitted with sbatch; each array task is a
    `search worker --study NAME` (with --space/--data/--artifacts, pinned as that command is). The
    store URL in it carries no password: a password file beside the script (mode 600, PGPASSFILE)
    holds it. `search status --study NAME` lists the workers by their Slurm job id.
    """
    from search import api

    job = _run(lambda: api.slurm(study, storage=storage, **options))
    if job.job_id is None:
        console.print(f"wrote {escape(str(job.script))} ({job.workers} workers); submit it with "
                      f"sbatch {escape(str(job.script))}", highlight=False, soft_wrap=True)
        return
    console.print(f"submitted Slurm job {job.job_id}: {job.workers} workers on study "
                  f"{escape(repr(study))} (array tasks {job.job_id}_0..{job.job_id}_{job.workers - 1}, "
                  f"batch script {escape(str(job.script))})", highlight=False, soft_wrap=True)


@main.command()
@click.option("--study", default=None, help="Study name (default: list the studies).")
@_option("storage")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(study, storage, fmt):
    """Studies in the store, or one study's trials by state and its best configuration."""
    from search import api
    from search.console.status import print_study, studies_table

    snaps = _run(lambda: api.status(study, storage=storage))
    if fmt == "json":
        payload = snaps[0].to_dict() if study else [s.to_dict() for s in snaps]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    if study:
        print_study(console, snaps[0])
    elif snaps:
        console.print(studies_table(snaps))
    else:
        console.print("No studies in this store yet: `search start SPACE_FILE` creates one.")


@main.command()
@click.option("--study", required=True, help="Study name.")
@_option("storage")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              help="text: tables in the terminal; json: the same numbers; csv: the trials table.")
@click.option("--html", "html_path", default=None, metavar="PATH",
              help="Write the HTML report here (text format: default reports/<study>.html).")
@click.option("--no-html", "no_html", is_flag=True, help="Do not write the HTML report.")
@click.option("--params", default=None, metavar="a,b,...", help="Only these parameters.")
def analyze(study, storage, fmt, html_path, no_html, params):
    """What each hyperparameter did: effect tables, verdicts, importances, ablation, HTML report.

    The text format also writes the self-contained HTML report (reports/<study>.html unless
    --html PATH or --no-html); json and csv write to stdout, and the report only with --html.
    """
    from search import api
    from search.console.analysis import render_text

    if html_path and no_html:
        _fail("--html and --no-html contradict each other: give one")
    names = _parse_names(params, "--params")
    _run(lambda: api.check_html_path(html_path))
    result = _run(lambda: api.analyze(study, storage=storage, params=names))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif fmt == "csv":
        click.echo(result.trials_frame().to_csv(index=False), nl=False)
    else:
        render_text(result.analysis, console)
    if html_path or (fmt == "text" and not no_html):
        path = _run(lambda: result.write_html(html_path))
        (console if fmt == "text" else err_console).print(f"HTML report: {path}", highlight=False)


@main.command()
@click.option("--study", required=True, help="Study name.")
@_option("storage")
@click.option("--params", default=None, metavar="a,b,...",
              help="Parameters to ablate (default: the 3 most important).")
@click.option("--repeats", type=int, default=None, metavar="R",
              help="Runs of each configuration, with different seeds (default 3).")
@click.option("--interaction", is_flag=True,
              help="Also cross the first two parameters (every value of one with every value of "
                   "the other): does the best value of one depend on the other?")
def ablate(study, storage, params, repeats, interaction):
    """Queue one-factor-at-a-time trials around the best configuration.

    For each parameter, each value (a grid for a continuous one) with every other parameter at
    the best search trial's value, R times; with --interaction, also the two-factor grid of the
    first two. The study's budget grows by as many trials; run them with `search worker --study
    NAME` (or resume `search start`), then `search analyze`.
    """
    from search import api
    from search.console.ablate import print_queued

    names = _parse_names(params, "--params")
    queued = _run(lambda: api.ablate(study, storage=storage, params=names, repeats=repeats,
                                     interaction=interaction))
    print_queued(console, queued)


@main.command()
@click.option("--study", required=True, help="Study name.")
@_option("storage")
@click.option("--top", type=int, default=None, metavar="K",
              help="How many trials (default: as many as the study keeps checkpoints of).")
@click.option("--evaluate", is_flag=True,
              help="Evaluate each one's best-epoch weights on the held-out test split.")
@click.option("--export", "export_dir", default=None, metavar="DIR",
              help="Write DIR/trial_<n>.keras and DIR/trial_<n>.json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--space", "space_file", default=None, metavar="FILE",
              help="Rebuild the models only if the space source stored with the study is this file's.")
@click.option("--data", default=None, metavar="NAME_OR_PATH",
              help="Only if the study reads this data (with --space: needed for a data path).")
@click.option("--artifacts", default=None, metavar="PATH|s3://BUCKET[/PREFIX]",
              help="Only if the study keeps its checkpoints there (with --space: needed where the "
                   "study names its artifact store).")
def best(study, storage, top, evaluate, export_dir, fmt, space_file, data, artifacts):
    """The best trials, with their kept checkpoints; test-split metrics and export.

    --evaluate and --export rebuild the models from the space source stored with the study:
    --space FILE refuses to unless it is exactly FILE's.
    """
    from search import api
    from search.console.best import print_best

    def on_note(note):  # on stderr: stdout may be JSON
        err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)

    result = _run(lambda: api.best(study, storage=storage, top=top, evaluate=evaluate,
                                   export=export_dir, space=space_file, data=data,
                                   artifacts=artifacts, on_note=on_note))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    print_best(console, result, export_dir)
