"""What ``search start`` and ``search worker`` show while they run: the study line, notes, a live
view of the running trials, one line per finished trial, and the command to run next."""

from __future__ import annotations

import shlex
import time

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from search import trial_attrs
from search.console.format import metric, significant


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
    """What a running study shows. In a terminal, a live view redrawn with each snapshot: trial n
    of N, best so far and the time, then each running trial with its worker, epoch k of N and its
    latest objective (workers still loading Keras and the data are shown as starting). Everywhere,
    piped too, one line per trial as it finishes."""

    def __init__(self, console):
        self.console = console
        self.live = None
        self.workers = 0
        self.shown: set[int] = set()
        self.began = time.monotonic()

    def start(self, budget: int, workers: int = 0) -> None:
        self.workers = workers
        if self.console.is_terminal:
            self.live = Live(Text(f"starting {_count(workers, 'worker')}: Keras and the data load first"),
                             console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def update(self, snap) -> None:
        again = trial_attrs.requeued_as(snap.trials)
        for t in sorted(snap.trials, key=lambda t: t.number):
            if t.state.is_finished() and t.number not in self.shown:
                self.shown.add(t.number)
                best = snap.best is not None and snap.best.number == t.number
                self.console.print(escape(trial_line(t, snap.config.objective, again.get(t.number),
                                                     best=best)), highlight=False)
        if self.live is not None:
            self.live.update(self.view(snap))

    def view(self, snap) -> Group:
        best = (f"best {snap.config.objective} {metric(snap.best.value)} (#{snap.best.number})"
                if snap.best else "no trial complete yet")
        elapsed = _clock(time.monotonic() - self.began)
        lines = [Text(f"{snap.finished} of {snap.budget} trials finished | {best} | {elapsed}")]
        running = sorted((t for t in snap.trials if t.state.name == "RUNNING"), key=lambda t: t.number)
        by_trial = {w.trial_number: w for w in snap.live_workers if w.trial_number is not None}
        for t in running:
            epochs = len(t.intermediate_values)
            latest = t.intermediate_values[max(t.intermediate_values)] if epochs else None
            worker = by_trial.get(t.number)
            where = f"{worker.host}:{worker.pid}" + (f" gpu {worker.gpu}" if worker.gpu else "") \
                if worker else "a worker"
            progress = (f"epoch {epochs} of {snap.config.epochs}, {snap.config.objective} "
                        f"{metric(latest)}" if epochs else "building, first epoch running")
            lines.append(Text(f"  trial {t.number} on {where}: {progress}"))
        starting = self.workers - len(snap.live_workers)
        if starting > 0 and not snap.done:
            lines.append(Text(f"  {_count(starting, 'worker')} starting (loading Keras and the data)",
                              style="dim"))
        return Group(*lines)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def trial_line(trial, objective: str | None = None, requeued: int | None = None,
               best: bool = False) -> str:
    """One finished trial: state, objective, epochs and time, attempt, failure reason."""
    attrs = trial.user_attrs
    state = trial.state.name.lower()
    parts = [f"trial {trial.number} {state}"]
    if trial.value is not None:
        parts.append(f"{objective or 'value'} {metric(trial.value)}")
    epochs, seconds = attrs.get(trial_attrs.EPOCHS), attrs.get(trial_attrs.TRAIN_SECONDS)
    if epochs:
        counted = f"at epoch {epochs}" if state == "pruned" else \
            f"after {epochs} epoch{'' if epochs == 1 else 's'}"
        parts.append(counted + (f", {significant(seconds)} s" if seconds is not None else ""))
    tries = trial_attrs.attempt(trial)
    line = ", ".join(parts) + (f" (attempt {tries})" if tries > 1 else "")
    reason = trial_attrs.fail_reason(trial, requeued)
    if reason:
        line += f": {reason}"
    return line + (" - best so far" if best else "")


def next_command(study: str, storage: str | None) -> str:
    """What to run when a study's workers are done."""
    where = f" --storage {shlex.quote(storage)}" if storage else ""
    return f"next: search analyze --study {shlex.quote(study)}{where}"


def resume_command(space_file: str, study: str, options: dict, fixed: dict, flag_of) -> str:
    """The exact command that resumes the study: the same space file, options and ``--set``
    values, and its ``--study`` name. ``flag_of`` maps an option's name to its flag."""
    words = ["search", "start", space_file, "--study", study]
    for name, value in options.items():
        if value is not None and name != "study":
            words += [flag_of(name), str(value)]
    for name, value in fixed.items():
        words += ["--set", f"{name}={value}"]
    return " ".join(shlex.quote(w) for w in words)
