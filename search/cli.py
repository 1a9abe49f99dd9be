"""The ``search`` command line: parses, calls ``search.api``, prints. Nothing else happens here."""

from __future__ import annotations

import json
import sys

import click
import optuna
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

import search  # noqa: F401  (sets the backend's log level before anything imports it)
from search.errors import SearchError

console = Console()
err_console = Console(stderr=True)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fail(message: str, code: int = 1):
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _run(fn):
    """Call ``fn``; user errors become one line on stderr and a non-zero exit."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage import StoreError

    try:
        return fn()
    except (SearchError, StoreError) as exc:
        _fail(str(exc))
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        cause = exc.__cause__ or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        _fail(f"the store failed and did not come back: {first}")


def _parse_set(values: tuple[str, ...]) -> dict:
    fixed = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            _fail(f"--set {item!r}: expected NAME=VALUE")
        fixed[name.strip()] = value.strip()
    return fixed


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


@click.group(cls=_OneLineErrors)
def main():
    """Hyperparameter search for Keras: Keras Tuner spaces, Optuna studies, many workers."""


storage_option = click.option("--storage", "storage_url", default=None, metavar="URL",
                              help="Study store (default: $SEARCH_STORAGE, else sqlite:///search.db).")
gpus_option = click.option("--gpus", default=None, metavar="0,1",
                           help="GPUs for local workers, one process each (default: every visible GPU).")
per_gpu_option = click.option("--per-gpu", "per_gpu", type=int, default=None, metavar="K",
                              help="Worker processes per GPU (or CPU workers where there is no GPU).")


@main.command()
@click.argument("space_file", type=click.Path(dir_okay=False))
@click.option("--study", default=None, help="Study name (default: the space file's stem).")
@storage_option
@click.option("--trials", type=int, default=None, help="The study's total trial budget (all workers).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs per trial.")
@click.option("--workers", type=int, default=None, help="Local worker processes (default: one per GPU, else 1).")
@click.option("--data", default=None, metavar="NAME_OR_PATH", help="Data set name or .npz path.")
@click.option("--set", "set_values", multiple=True, metavar="NAME=VALUE", help="Fix a hyperparameter.")
@click.option("--sampler", default=None, type=click.Choice(["tpe", "random", "grid"]), help="Optuna sampler.")
@click.option("--seed", type=int, default=None, help="Seed for splits, samplers and weights.")
@click.option("--pruner", default=None, type=click.Choice(["none", "median", "hyperband", "asha"]),
              help="Optuna pruner, fed each epoch's objective (default: median).")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="The study's wall-clock budget from now, for every worker: no trial starts after it.")
@gpus_option
@per_gpu_option
@click.option("--heartbeat", type=int, default=None, metavar="SECONDS",
              help="Heartbeat interval of running trials (default 10).")
@click.option("--grace", type=int, default=None, metavar="SECONDS",
              help="A trial without a heartbeat for this long is failed and retried (default 60).")
@click.option("--keep-best", "keep_best", type=int, default=None, metavar="K",
              help="Keep the best-epoch weights of the K best trials (default 3; 0: none).")
@click.option("--artifacts", default=None, metavar="PATH|s3://BUCKET[/PREFIX]",
              help="Artifact store for those weights (default: a folder next to a SQLite store).")
@click.option("--trial-timeout", "trial_timeout", type=float, default=None, metavar="SECONDS",
              help="A trial running longer is stopped and failed with its reason (default: no limit).")
def start(space_file, study, storage_url, trials, epochs, workers, data, set_values, sampler, seed,
          pruner, timeout, gpus, per_gpu, heartbeat, grace, keep_best, artifacts, trial_timeout):
    """Create (or resume) a study of SPACE_FILE and run it to its budget."""
    from search import api, render
    from storage import mask_url, resolve_url

    fixed = _parse_set(set_values)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    task = {}

    def on_prepared(prepared):
        h = prepared.handle
        verb = "Resuming" if prepared.resumed else "Created"
        console.print(f"{verb} study [bold]{escape(prepared.study_name)}[/bold] in "
                      + escape(f"{mask_url(resolve_url(storage_url))}: space {h.record.space_path}, "
                               f"data {h.config.data}, {h.config.epochs} epochs per trial, "
                               f"{h.config.sampler} sampler, objective {h.config.objective} "
                               f"({h.config.direction})"), highlight=False)
        for note in prepared.notes:
            console.print(f"note: {escape(note)}", highlight=False)
        if h.record.deadline is not None:
            console.print(f"note: no trial starts after {timeout:g} s from now (--timeout)",
                          highlight=False)
        task["notes"] = len(prepared.notes)
        progress.start()
        task["id"] = progress.add_task("starting workers", total=h.record.budget)

    def on_progress(snap):
        best = render.fmt(snap.best.value) if snap.best else "-"
        running = snap.states.get("RUNNING", 0)
        progress.update(task["id"], total=snap.budget, completed=snap.finished,
                        description=f"trial {min(snap.finished + 1, snap.budget)} of {snap.budget} "
                                    f"| running {running} | workers {len(snap.live_workers)} "
                                    f"| best {snap.config.objective} {best}")

    try:
        result = _run(lambda: api.start(space_file, study=study, storage_url=storage_url, trials=trials,
                                        epochs=epochs, workers=workers, data=data, fixed=fixed,
                                        sampler=sampler, seed=seed, pruner=pruner, timeout=timeout,
                                        gpus=gpus, per_gpu=per_gpu, heartbeat=heartbeat, grace=grace,
                                        keep_best=keep_best, artifacts=artifacts,
                                        trial_timeout=trial_timeout,
                                        on_prepared=on_prepared, on_progress=on_progress))
    except KeyboardInterrupt as exc:
        progress.stop()
        terminated = type(exc).__name__ == "Terminated"  # SIGTERM (search.coordinator.Terminated)
        _fail(f"{'terminated' if terminated else 'interrupted'}: finished trials are kept; "
              f"interrupted ones run again on resume (search start {space_file})",
              code=143 if terminated else 130)
    progress.stop()
    for note in result.notes[task["notes"]:]:
        console.print(f"note: {escape(note)}", highlight=False)
    render.print_study(console, result.snapshot)


@main.command()
@click.option("--study", required=True, help="Study name.")
@storage_option
@gpus_option
@per_gpu_option
@click.option("--space", "space_file", default=None, metavar="FILE",
              help="Run only if the space source stored with the study is this file's.")
@click.option("--slot", type=int, default=None, hidden=True)
@click.option("--quiet", is_flag=True, hidden=True)
@click.option("--space-sha256", "space_sha256", default=None, hidden=True)
def worker(study, storage_url, gpus, per_gpu, space_file, slot, quiet, space_sha256):
    """Attach to a study and take trials until its budget is spent.

    Needs only the store and the study name: the study carries its configuration and the source
    of its space. One worker process per GPU (--gpus, --per-gpu), or one CPU worker. With
    --space FILE it refuses to run unless the stored source is exactly FILE's: whoever can write
    to the store decides what code the workers run.
    """
    from search import api, render

    def on_trial(t):
        if not quiet:
            reason = t.user_attrs.get("fail_reason")
            tries = t.user_attrs.get("attempt", 1)
            console.print(escape(f"trial {t.number} {t.state.name.lower()} value {render.fmt(t.value)}"
                                 + (f" (attempt {tries})" if tries > 1 else "")
                                 + (f" ({reason})" if reason else "")), highlight=False)

    def on_note(note):
        console.print(f"note: {escape(note)}", highlight=False)

    try:
        report = _run(lambda: api.worker(study, storage_url=storage_url, gpus=gpus, per_gpu=per_gpu,
                                         slot=slot, on_trial=on_trial, on_note=on_note,
                                         space=space_file, space_sha256=space_sha256,
                                         restart_when_stuck=True))
    except KeyboardInterrupt:
        _fail("interrupted: the running trial was queued again with the same parameters", code=130)
    if report.interrupted:
        if not quiet:
            console.print(f"stopped: this worker ran {report.trials} trials; the running one was "
                          "queued again with the same parameters")
        sys.exit(130)
    if not quiet:
        console.print(f"budget spent: ran {report.trials} trials "
                      f"({report.complete} complete, {report.pruned} pruned, {report.failed} failed)")


@main.command()
@click.option("--study", default=None, help="Study name (default: list the studies).")
@storage_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(study, storage_url, fmt):
    """Studies in the store, or one study's trials by state and its best configuration."""
    from search import api, render

    snaps = _run(lambda: api.status(study, storage_url=storage_url))
    if fmt == "json":
        payload = snaps[0].to_dict() if study else [s.to_dict() for s in snaps]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    if study:
        render.print_study(console, snaps[0])
    elif snaps:
        console.print(render.studies_table(snaps))
    else:
        console.print("No studies in this store yet: `search start SPACE_FILE` creates one.")


def _parse_names(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        _fail(f"{option} {value!r}: expected names separated by commas, e.g. lr,optimizer")
    return names


@main.command()
@click.option("--study", required=True, help="Study name.")
@storage_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              help="text: tables in the terminal; json: the same numbers; csv: the trials table.")
@click.option("--html", "html_path", default=None, metavar="PATH",
              help="Write the HTML report here (text format: default reports/<study>.html).")
@click.option("--no-html", "no_html", is_flag=True, help="Do not write the HTML report.")
@click.option("--params", default=None, metavar="a,b,...", help="Only these parameters.")
def analyze(study, storage_url, fmt, html_path, no_html, params):
    """What each hyperparameter did: effect tables, verdicts, importances, ablation, HTML report.

    The text format also writes the self-contained HTML report (reports/<study>.html unless
    --html PATH or --no-html); json and csv write to stdout, and the report only with --html.
    """
    # search.reports, not search.api: reading a study imports no Keras (seconds saved)
    from search import reports
    from search.analysis import render_text

    if html_path and no_html:
        _fail("--html and --no-html contradict each other: give one")
    names = _parse_names(params, "--params")
    _run(lambda: reports.check_html_path(html_path))
    result = _run(lambda: reports.analyze(study, storage_url=storage_url, params=names))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif fmt == "csv":
        click.echo(result.trials_frame().to_csv(index=False), nl=False)
    else:
        render_text(result.analysis, console)
    if html_path or (fmt == "text" and not no_html):
        path = _run(lambda: reports.write_report(result, html_path))
        (console if fmt == "text" else err_console).print(f"HTML report: {path}", highlight=False)


@main.command()
@click.option("--study", required=True, help="Study name.")
@storage_option
@click.option("--params", default=None, metavar="a,b,...",
              help="Parameters to ablate (default: the 3 most important).")
@click.option("--repeats", type=int, default=None, metavar="R",
              help="Runs of each configuration, with different seeds (default 2).")
def ablate(study, storage_url, params, repeats):
    """Queue one-factor-at-a-time trials around the best configuration.

    For each parameter, each value (a grid for a continuous one) with every other parameter at
    the best search trial's value, R times. The study's budget grows by as many trials; run them
    with `search worker --study NAME` (or resume `search start`), then `search analyze`.
    """
    from search import api, tables

    names = _parse_names(params, "--params")
    queued = _run(lambda: api.ablate(study, storage_url=storage_url, params=names, repeats=repeats))
    for note in queued.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(tables.ablation_table(queued))
    console.print(f"Queued {len(queued.trials)} ablation trials in study [bold]{escape(study)}[/bold] "
                  f"around trial #{queued.center_trial} ({tables.fmt(queued.center_value)}); "
                  f"budget {queued.budget_before} -> {queued.budget_after} trials.")
    console.print(f"Run them: search worker --study {escape(study)}   then: search analyze --study "
                  f"{escape(study)}", highlight=False)


@main.command()
@click.option("--study", required=True, help="Study name.")
@storage_option
@click.option("--top", type=int, default=None, metavar="K",
              help="How many trials (default: as many as the study keeps checkpoints of).")
@click.option("--evaluate", is_flag=True,
              help="Evaluate each one's best-epoch weights on the held-out test split.")
@click.option("--export", "export_dir", default=None, metavar="DIR",
              help="Write DIR/trial_<n>.keras and DIR/trial_<n>.json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def best(study, storage_url, top, evaluate, export_dir, fmt):
    """The best trials, with their kept checkpoints; test-split metrics and export."""
    from search import api, tables

    result = _run(lambda: api.best(study, storage_url=storage_url, top=top, evaluate=evaluate,
                                   export=export_dir))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    console.print(tables.best_table(result))
    for line in tables.configuration_lines(result):
        console.print(line)
    for row in result.trials:
        if row.problem:
            console.print(f"note: trial {row.number}: {row.problem}", highlight=False)
    if export_dir:
        exported = sum(1 for r in result.trials if r.exported)
        console.print(f"Exported {exported} models to {export_dir}", highlight=False)
