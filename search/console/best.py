"""The terminal table of ``search best``: the top trials, their test metrics and checkpoints."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from search.console.format import metric, param_value


def _metrics_text(metrics: dict | None) -> str:
    if not metrics:
        return "-"
    return ", ".join(f"{k} {metric(v)}" for k, v in sorted(metrics.items()))


def best_table(result) -> Table:
    """The top trials: rank, trial, objective, test metrics, best epoch, time, checkpoint."""
    table = Table(title=Text(f"Best {len(result.trials)} trials of {result.study} "
                             f"({result.objective}, {result.direction})"), title_justify="left",
                  caption=Text(f"checkpoints: the best {result.keep_best} kept in {result.artifacts}"),
                  caption_justify="left")
    for column in ("#", "trial", result.objective, "test split", "test n", "best epoch", "train s",
                   "checkpoint"):
        table.add_column(column, justify="left" if column in ("test split", "checkpoint") else "right")
    for r in result.trials:
        epoch = f"{r.best_epoch} of {r.epochs}" if r.best_epoch is not None and r.epochs else "-"
        table.add_row(str(r.rank), str(r.number), metric(r.value), Text(_metrics_text(r.test_metrics)),
                      metric(r.test_samples), epoch, metric(r.train_seconds), Text(r.checkpoint))
    return table


def configuration_lines(result) -> list[Text]:
    """One line per top trial: its hyperparameters (and what it is, e.g. an ablation trial)."""
    lines = []
    for r in result.trials:
        params = ", ".join(f"{k}={param_value(v)}" for k, v in r.params.items())
        tags = f" [{'; '.join(r.tags)}]" if r.tags else ""
        lines.append(Text(f"trial {r.number}: {params}{tags}"))
    return lines


def print_best(console, result, export_dir: str | None = None) -> None:
    """``search best``'s output: the table, each trial's configuration, problems, exports."""
    console.print(best_table(result))
    for line in configuration_lines(result):
        console.print(line)
    for row in result.trials:
        if row.problem:
            console.print(f"note: trial {row.number}: {row.problem}", highlight=False)
    if export_dir:
        exported = sum(1 for r in result.trials if r.exported)
        console.print(f"Exported {exported} models to {export_dir}", highlight=False)
