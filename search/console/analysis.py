"""The analysis in the terminal: rich tables (overview, importances, one effect table per
parameter with its verdict, ablation effects, notes). Every user-controlled string is escaped."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from search.console.format import duration, number, param_value

if TYPE_CHECKING:  # results of search.analysis, a layer above: read, never imported
    from search.analysis import Analysis, ParamEffect

BAR_WIDTH = 20


def overview_table(analysis: Analysis) -> Table:
    o = analysis.overview
    table = Table(title=Text(f"Study {analysis.study_name}"), title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(o["states"].items()))
    table.add_row("trials", Text(f"{o['trials']} ({states})"))
    if o["budget"]:
        table.add_row("budget used", Text(f"{o['finished']} of {o['budget']} ({o['budget_used']:.0%})"))
    if o["ablation_trials"]:
        table.add_row("ablation trials", str(o["ablation_trials"]))
    table.add_row("training time", Text(f"{duration(o['train_seconds'])} in fit, "
                                        f"{duration(o['trial_seconds'])} in trials"))
    table.add_row("objective", Text(f"{analysis.objective} ({analysis.direction})"))
    for label, best in (("best", o["best"]), ("best search trial", o.get("best_search"))):
        if best:
            config = ", ".join(f"{k}={param_value(v)}" for k, v in best["params"].items())
            kind = f", ablation of {best['ablation']}" if best.get("ablation") else ""
            table.add_row(label, Text(f"#{best['number']}: {number(best['value'], 4)}{kind}  ({config})"))
    if o["baseline"]:
        b = o["baseline"]
        table.add_row("baseline", Text(f"#{b['number']}: {number(b['value'], 4)} ({b['state'].lower()})"))
    for reason, count in o["failure_reasons"].items():
        table.add_row("failure", Text(f"{count}x {reason}", style="red"))
    return table


def importance_table(analysis: Analysis) -> Table:
    imp = analysis.importance
    title = f"Importance ({imp.method}, {imp.trials} completed trials)" if imp.method else "Importance"
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("importance", justify="right")
    table.add_column("")
    for name, value in imp.values.items():
        table.add_row(Text(name), f"{value:.3f}", "█" * max(1, round(value * BAR_WIDTH)))
    if imp.note:
        table.caption = escape(imp.note)
    return table


def effect_table(effect: ParamEffect, objective: str) -> Table:
    importance = f", importance {effect.importance:.2f}" if effect.importance is not None else ""
    table = Table(title=Text(f"{effect.name} ({effect.kind}{importance})"), title_justify="left",
                  caption=Text(effect.verdict, style="bold"), caption_justify="left")
    for column in ("value", "trials", f"mean {objective}", "95% interval", "median", "best",
                   "s/epoch", "train-val gap", "failed"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for r in effect.rows.itertuples():
        interval = f"{number(r.ci_low)}..{number(r.ci_high)}" if not math.isnan(r.ci_low) else "-"
        failed = f"{r.failed} ({r.diverged} diverged)" if r.diverged else str(r.failed)
        table.add_row(Text(param_value(r.value)), str(r.trials), number(r.mean), interval,
                      number(r.median), number(r.best), number(r.sec_per_epoch), number(r.gap),
                      failed)
    return table


def ablation_table(effect, objective: str) -> Table:
    table = Table(title=Text(f"Ablation: {effect.name} around {param_value(effect.center)}"),
                  title_justify="left", caption=Text(effect.verdict, style="bold"),
                  caption_justify="left")
    for column in ("value", "repeats", f"mean {objective}", "effect", "95% interval", "failed"):
        table.add_column(column, justify="left" if column == "value" else "right")
    for r in effect.rows.itertuples():
        interval = (f"{r.effect_low:+.3g}..{r.effect_high:+.3g}" if not math.isnan(r.effect_low)
                    else "-")
        effect_text = f"{r.effect:+.3g}" if not math.isnan(r.effect) else "-"
        table.add_row(Text(param_value(r.value)), str(r.trials), number(r.mean), effect_text,
                      interval, str(r.failed))
    return table


def render_text(analysis: Analysis, console: Console) -> None:
    """Print the analysis: overview, importances, effect tables with verdicts, ablation, notes."""
    console.print(overview_table(analysis))
    if analysis.importance.values or analysis.importance.note:
        console.print(importance_table(analysis))
    for effect in analysis.effects:
        console.print(effect_table(effect, analysis.objective))
    for effect in analysis.ablation:
        console.print(ablation_table(effect, analysis.objective))
    for note in analysis.notes:
        console.print(Text(note, style="yellow"))
