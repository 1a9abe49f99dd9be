"""What ``search start`` and ``search worker`` show while they run: the study line, notes, a live
bar (trial n of N, running, workers, best so far) and one line per finished trial."""

from __future__ import annotations

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from search import trial_attrs
from search.console.format import metric


def prepared_lines(prepared, timeout: float | None) -> list[str]:
    """The created or resumed study (rich markup), its notes, and the deadline."""
    stored, config = prepared.stored, prepared.stored.config
    verb = "Resuming" if prepared.resumed else "Created"
    lines = [f"{verb} study [bold]{escape(prepared.study_name)}[/bold] in "
             + escape(f"{stored.where}: space {stored.record.space_path}, data {config.data}, "
                      f"{config.epochs} epochs per trial, {config.sampler} sampler, objective "
                      f"{config.objective} ({config.direction})")]
    lines += [f"note: {escape(note)}" for note in prepared.notes]
    if stored.record.deadline is not None:
        lines.append(f"note: no trial starts after {timeout:g} s from now (--timeout)")
    return lines


class StudyProgress:
    """The live bar of a running study, fed with snapshots."""

    def __init__(self, console):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.task = None

    def start(self, budget: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("starting workers", total=budget)

    def update(self, snap) -> None:
        best = metric(snap.best.value) if snap.best else "-"
        running = snap.states.get("RUNNING", 0)
        self.progress.update(self.task, total=snap.budget, completed=snap.finished,
                             description=f"trial {min(snap.finished + 1, snap.budget)} of "
                                         f"{snap.budget} | running {running} | workers "
                                         f"{len(snap.live_workers)} | best "
                                         f"{snap.config.objective} {best}")

    def stop(self) -> None:
        self.progress.stop()


def trial_line(trial) -> str:
    """One finished trial of ``search worker``: state, value, attempt, failure reason."""
    reason = trial.user_attrs.get(trial_attrs.FAIL_REASON)
    tries = trial.user_attrs.get(trial_attrs.ATTEMPT, 1)
    return (f"trial {trial.number} {trial.state.name.lower()} value {metric(trial.value)}"
            + (f" (attempt {tries})" if tries > 1 else "") + (f" ({reason})" if reason else ""))
