"""Terminal tables for ``search ablate`` (what was queued) and ``search best`` (the top trials)."""

from __future__ import annotations

from collections import Counter

from rich.table import Table
from rich.text import Text

from search.analysis.effects import value_label
from search.render import fmt

__all__ = ["ablation_table", "best_table", "configuration_lines", "fmt"]


def ablation_table(queued) -> Table:
    """One row per ablated value: parameter, value, repeats (the center marked)."""
    table = Table(title=Text(f"Ablation queued around trial #{queued.center_trial}"),
                  title_justify="left")
    for column in ("parameter", "value", "trials"):
        table.add_column(column, justify="right" if column == "trials" else "left")
    counts = Counter((e["ablation"]["param"], repr(e["ablation"]["value"])) for e in queued.trials)
    seen = set()
    for entry in queued.trials:
        tag = entry["ablation"]
        key = (tag["param"], repr(tag["value"]))
        if key in seen:
            continue
        seen.add(key)
        label = value_label(tag["value"])
        if repr(tag["value"]) == repr(tag["center"]):
            label += " (best, the reference)"
        table.add_row(Text(tag["param"]), Text(label), str(counts[key]))
    return table


def _metrics_text(metrics: dict | None) -> str:
    if not metrics:
        return "-"
    return ", ".join(f"{k} {fmt(v)}" for k, v in sorted(metrics.items()))


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
        epoch = f"{r.best_epoch + 1} of {r.epochs}" if r.best_epoch is not None and r.epochs else "-"
        table.add_row(str(r.rank), str(r.number), fmt(r.value), Text(_metrics_text(r.test_metrics)),
                      fmt(r.test_samples), epoch, fmt(r.train_seconds), Text(r.checkpoint))
    return table


def configuration_lines(result) -> list[Text]:
    """One line per top trial: its hyperparameters (and what it is, e.g. an ablation trial)."""
    lines = []
    for r in result.trials:
        params = ", ".join(f"{k}={value_label(v)}" for k, v in r.params.items())
        tags = f" [{'; '.join(r.tags)}]" if r.tags else ""
        lines.append(Text(f"trial {r.number}: {params}{tags}"))
    return lines
