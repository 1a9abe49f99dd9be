"""A study's state in the terminal: trials, best trial, live workers, deadline (``search status``,
and ``search start``'s summary)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search import trial_attrs
from search.console.format import metric, param_value, significant
from search.trial_attrs import attempt, fail_reason, hp_values, requeued_as

if TYPE_CHECKING:
    from search.study import StudySnapshot

MAX_TRIAL_ROWS = 50
WIDE = 120  # columns from which a trial's hyperparameters fit beside its figures


FOREIGN_NOTE = ("a plain Optuna study (not created by `search start`): no budget or workers of ours, "
                "and no space, which `search ablate` and `search best --evaluate` need")


def states_line(snap: StudySnapshot) -> str:
    states = ", ".join(f"{n} {state.lower()}" for state, n in sorted(snap.states.items())) or "no trials"
    of = "" if snap.budget is None else f" of {snap.budget}"
    return f"{snap.finished}{of} trials finished ({states})"


def trials_table(snap: StudySnapshot, title: str = "Trials", with_config: bool = True) -> Table:
    """The trials, one row each; ``with_config=False`` leaves the hyperparameters to
    :func:`configs_table` (a narrow terminal, a pipe)."""
    trials = sorted(snap.trials, key=lambda t: t.number)
    table = Table(title=title, title_justify="left")
    for col in ("#", "state", escape(snap.config.objective), "epochs", "train s", "ms/step"):
        table.add_column(col, justify="right" if col != "state" else "left", no_wrap=col != "state")
    if with_config:
        table.add_column("hyperparameters", ratio=1)
    shown = trials[-MAX_TRIAL_ROWS:]
    again = requeued_as(trials)
    for t in shown:
        attrs = t.user_attrs
        tries = attempt(t)
        state = t.state.name.lower() + (f" (attempt {tries})" if tries > 1 else "")
        cells = [str(t.number), state, metric(t.value), significant(attrs.get(trial_attrs.EPOCHS)),
                 significant(attrs.get(trial_attrs.TRAIN_SECONDS)),
                 significant(attrs.get(trial_attrs.MS_PER_STEP))]
        if with_config:
            cells.append(_config_text(hp_values(t), fail_reason(t, again.get(t.number))))
        table.add_row(*cells)
    if len(trials) > len(shown):
        table.caption = f"last {len(shown)} of {len(trials)} trials"
    return table


def configs_table(snap: StudySnapshot) -> Table:
    """Each shown trial's hyperparameters (and failure reason) on the full width."""
    trials = sorted(snap.trials, key=lambda t: t.number)[-MAX_TRIAL_ROWS:]
    again = requeued_as(snap.trials)
    table = Table(title="Hyperparameters", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("hyperparameters", ratio=1, overflow="fold")
    for t in trials:
        table.add_row(str(t.number), _config_text(hp_values(t), fail_reason(t, again.get(t.number))))
    return table


def _config_text(values: dict, failure: str | None) -> str:
    text = escape(", ".join(f"{k}={param_value(v)}" for k, v in values.items()))
    return f"{text}\n[red]{escape(failure)}[/red]" if failure else text


def best_table(snap: StudySnapshot) -> Table | None:
    best = snap.best
    if best is None:
        return None
    table = Table(title=escape(f"Best trial #{best.number}: {snap.config.objective} = {metric(best.value)}"),
                  title_justify="left")
    table.add_column("hyperparameter")
    table.add_column("value", justify="right")
    for name, value in hp_values(best).items():
        table.add_row(escape(name), escape(param_value(value)))
    metrics = best.user_attrs.get(trial_attrs.METRICS, {})
    for name, value in sorted(metrics.items()):
        table.add_row(f"[dim]{escape(name)} (best epoch)[/dim]", metric(value))
    return table


def conditions_table(snap: StudySnapshot) -> Table | None:
    """The best completed trial of each swept condition (``CONDITIONS``); None when none swept."""
    bests = snap.condition_bests
    if not bests:
        return None
    table = Table(title=escape(f"Best per condition ({snap.config.objective})"), title_justify="left")
    for col in ("condition", "complete", "best", "trial"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for c in bests:
        table.add_row(escape(", ".join(f"{k}={param_value(v)}" for k, v in c.condition.items())),
                      str(c.complete), metric(c.best.value if c.best else None),
                      f"#{c.best.number}" if c.best else "-")
    return table


def studies_table(snaps: list[StudySnapshot]) -> Table:
    table = Table(title="Studies", title_justify="left")
    for col in ("study", "objective", "finished", "budget", "running", "failed", "best"):
        table.add_column(col, justify="left" if col in ("study", "objective") else "right")
    for s in snaps:
        table.add_row(escape(s.study_name), escape(f"{s.config.objective} ({s.config.direction})"),
                      str(s.finished),
                      "-" if s.budget is None else str(s.budget), str(s.states.get("RUNNING", 0)), str(s.states.get("FAIL", 0)),
                      metric(s.best.value if s.best else None))
    foreign = [s.study_name for s in snaps if s.foreign]
    if foreign:
        table.caption = f"plain Optuna studies (not created by `search start`): {', '.join(foreign)}"
    return table


def workers_table(snap: StudySnapshot) -> Table | None:
    """Live workers: host, pid, GPU, state, current trial, trials run, age of the last heartbeat."""
    live = snap.live_workers
    if not live:
        return None
    table = Table(title=f"Live workers ({len(live)})", title_justify="left")
    jobs = any(w.job for w in live)  # a column of batch job ids (Slurm's 1234_2) where there are any
    for col in ("slurm job",) * jobs + ("host", "pid", "gpu", "state", "trial", "trials run",
                                         "last heartbeat"):
        table.add_column(col, justify="right" if col in ("pid", "trial", "trials run") else "left")
    for w in sorted(live, key=lambda w: (w.job or "", w.host, w.pid)):
        table.add_row(*(escape(w.job or "-"),) * jobs, escape(w.host), str(w.pid), escape(w.gpu or "cpu"),
                      w.state, metric(w.trial_number), str(w.trials_run), f"{w.heartbeat_age_s:.0f} s ago")
    return table


def deadline_line(snap: StudySnapshot) -> str | None:
    if snap.deadline is None:
        return None
    left = snap.deadline - time.time()
    return (f"deadline in {left:.0f} s" if left > 0
            else "deadline passed: no new trials start")


def print_study(console: Console, snap: StudySnapshot) -> None:
    console.print(f"Study [bold]{escape(snap.study_name)}[/bold]: {states_line(snap)}", highlight=False)
    if snap.foreign:
        console.print(FOREIGN_NOTE, highlight=False)
    deadline = deadline_line(snap)
    if deadline:
        console.print(deadline, highlight=False)
    workers = workers_table(snap)
    if workers is not None:
        console.print(workers)
    if console.width >= WIDE:
        console.print(trials_table(snap))
    else:  # the hyperparameters get a table of their own rather than a column cut to fragments
        console.print(trials_table(snap, with_config=False))
        console.print(configs_table(snap))
    best = best_table(snap)
    if best is None:
        console.print("No trial has completed yet.")
    else:
        console.print(best)
        conditions = conditions_table(snap)
        if conditions is not None:
            console.print(conditions)
