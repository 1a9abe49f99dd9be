"""The analysis in the terminal: rich tables (overview, importances, one effect table per
parameter with its verdict, ablation effects, notes). Every user-controlled string is escaped.

No number is ever cut to fit the console (80 columns when piped, a notebook's width): a table
too wide for it is turned round, or printed one value at a time (``fitting_table``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from search.console.format import held_values, number, param_value, significant, training_time

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
    table.add_row("training time", Text(training_time(o["train_seconds"], o["trial_seconds"])))
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


def best_value(effect: ParamEffect, maximize: bool) -> str | None:
    """The value with the best model mean among those with a verdict (the importance's direction)."""
    judged = effect.rows[effect.rows["row_verdict"] != "too few trials"]
    if judged.empty:
        return None
    top = judged.loc[judged["model_mean"].idxmax() if maximize else judged["model_mean"].idxmin()]
    return param_value(top["value"])


def importance_table(analysis: Analysis, width: int = 200) -> Table:
    imp = analysis.importance
    title = f"Importance ({imp.method}, {imp.trials} completed trials)" if imp.method else "Importance"
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("importance", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("best value (model)", no_wrap=True)
    table.columns[0].no_wrap = True
    best = {e.name: best_value(e, analysis.maximize) for e in analysis.effects}
    names = max((len(n) for n in imp.values), default=9)
    values = max((len(best.get(n) or "-") for n in imp.values), default=1)
    # the bar takes what the console leaves (80 columns when piped): the numbers are never cut
    bar = max(1, min(BAR_WIDTH, width - max(names, 9) - 10 - max(values, 18) - 13))
    for name, value in imp.values.items():
        table.add_row(Text(name), f"{value:.3f}", "█" * max(1, round(value * bar)),
                      Text(best.get(name) or "-"))
    if imp.note:
        table.caption = escape(imp.note)
    return table


def fitting_table(title: str, caption: str, headers: list[str], rows: list[list[str]],
                  width: int, turn: bool = True) -> Table:
    """A table whose cells are never cut, whatever the console's width (80 columns when piped):
    one row per value when that fits in ``width``; else turned round (a column per value; not
    when ``turn`` is False); else one small table per value, each field on its own line. Words in
    the caption wrap."""
    def span(cells_per_column: list[list[str]]) -> int:  # rich's box: 3 per column, 1 at the end
        return sum(max(len(c) for c in column) + 3 for column in cells_per_column) + 1

    columns = [[h, *(r[i] for r in rows)] for i, h in enumerate(headers)]
    turned = [[h for h in headers[1:]]] + [[r[0], *r[1:]] for r in rows]
    if not rows or span(columns) <= width:
        table = Table(title=Text(title), title_justify="left", caption=Text(caption, style="bold"),
                      caption_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=i > 0)
        for row in rows:
            table.add_row(*(Text(c) for c in row))
        return table
    if turn and span(turned) <= width:
        table = Table(title=Text(title), title_justify="left", caption=Text(caption, style="bold"),
                      caption_justify="left")
        table.add_column(headers[0], style="bold", no_wrap=True)
        for row in rows:
            table.add_column(Text(row[0]), justify="right", no_wrap=True)
        for i, header in enumerate(headers[1:], start=1):
            table.add_row(Text(header), *(Text(r[i]) for r in rows))
        return table
    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    grid.add_row(Text(title, style="italic"))
    for row in rows:
        block = Table(show_header=False, title=Text(f"{headers[0]} {row[0]}"), title_justify="left")
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")  # words wrap; a number is shorter than the column
        for header, cell in zip(headers[1:], row[1:]):
            block.add_row(Text(header), Text(cell))
        grid.add_row(block)
    grid.add_row(Text(caption, style="bold"))
    return grid


def _range(low, high, signed: bool = False) -> str:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "-"
    form = "+.3g" if signed else ".3g"
    return f"{low:{form}}..{high:{form}}"


def _signed(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.3g}"


EFFECT_HEADERS = ["value", "complete", "pruned", "failed", "model mean", "95% interval", "effect",
                  "effect 95%", "verdict", "completed mean", "s/epoch", "s/epoch (model)", "ms/step",
                  "1st epoch s", "train-val gap"]


def effect_cells(effect: ParamEffect) -> list[list[str]]:
    """The effect table's cells, one list per row (``EFFECT_HEADERS``)."""
    cells = []
    final = effect.rows["reached_epoch"].max()
    for r in effect.rows.itertuples():
        verdict = r.row_verdict
        if r.modelled and r.reached_epoch < final:
            verdict += f" (no trial past epoch {int(r.reached_epoch)})"
        failed = f"{r.failed} ({r.diverged} diverged)" if r.diverged else str(r.failed)
        cells.append([param_value(r.value), str(r.complete), str(r.pruned), failed,
                      number(r.model_mean), _range(r.model_low, r.model_high), _signed(r.effect),
                      _range(r.effect_low, r.effect_high, signed=True), verdict,
                      number(r.mean), significant(r.sec_per_epoch),
                      significant(r.sec_per_epoch_model), significant(r.ms_per_step),
                      significant(r.first_epoch_s), number(r.gap)])
    return cells


def effect_table(effect: ParamEffect, objective: str, width: int = 200) -> Table:
    importance = f", importance {effect.importance:.2f}" if effect.importance is not None else ""
    headers = [*EFFECT_HEADERS]
    headers[4] = f"mean {objective} (model)"
    return fitting_table(f"{effect.name} ({effect.kind}{importance})", effect.verdict, headers,
                         effect_cells(effect), width)


def ablation_table(effect, objective: str, width: int = 200) -> Table:
    headers = ["value", "repeats", f"mean {objective}", "effect", "95% interval (Welch)", "failed",
               "at chance", "s/epoch", "ms/step", "1st epoch s"]
    cells = [[param_value(r.value), str(r.trials), number(r.mean), _signed(r.effect),
              _range(r.effect_low, r.effect_high, signed=True), str(r.failed),
              f"{r.at_chance} of {r.complete}" if effect.chance else "-",
              significant(r.sec_per_epoch), significant(r.ms_per_step), significant(r.first_epoch_s)]
             for r in effect.rows.itertuples()]
    return fitting_table(f"Ablation: {effect.name} around {param_value(effect.center)}",
                         effect.verdict, headers, cells, width)


def interaction_table(effect, objective: str, width: int = 200) -> Table:
    """A two-factor ablation grid, the factor with more values down: each cell its completed
    repeats' mean, spread and count."""
    first_values, second_values = effect.first_values, effect.second_values
    by_cell = {(repr(r.first), repr(r.second)): r for r in effect.cells.itertuples()}
    (down, rows), (across, columns) = ((effect.pair[0], first_values), (effect.pair[1], second_values))
    flipped = len(second_values) > len(first_values)
    if flipped:
        (down, rows), (across, columns) = (across, columns), (down, rows)
    cells = []
    for a in rows:
        line = [param_value(a)]
        for b in columns:
            cell = by_cell.get((repr(b), repr(a)) if flipped else (repr(a), repr(b)))
            if cell is None:
                line.append("-")
            elif not cell.complete:
                line.append(f"- (0 of {cell.trials})")
            else:
                spread = "" if cell.std != cell.std else f"±{cell.std:.3f}"
                line.append(f"{cell.mean:.3f}{spread} ({cell.complete})")
        cells.append(line)
    return fitting_table(f"Interaction: {down} (down) x {across} (across): mean {objective} ±sd "
                         "(completed repeats)", effect.verdict,
                         [down, *[param_value(b) for b in columns]], cells, width, turn=False)


def condition_table(condition, objective: str, width: int = 200) -> Table:
    """A swept condition: per value, its best trial and its trials' means and time cost."""
    headers = ["value", "trials", "complete", f"best {objective}", "best trial", "completed mean",
               "model mean", "95% interval", "s/epoch", "ms/step", "1st epoch s"]
    cells = [[param_value(r.value), str(r.trials), str(r.complete), number(r.best),
              "-" if r.best_trial is None or r.best_trial != r.best_trial else f"#{int(r.best_trial)}",
              number(r.mean), number(r.model_mean), _range(r.model_low, r.model_high),
              significant(r.sec_per_epoch), significant(r.ms_per_step), significant(r.first_epoch_s)]
             for r in condition.rows.itertuples()]
    return fitting_table(f"Condition {condition.name} (swept: the search ran within each value)",
                         "At each value's best trial and across all its trials.", headers, cells, width)


def center_line(effect) -> Text:
    """The configuration the other factors were held at, printed above an ablation table."""
    held = held_values(effect.held)
    chance = f"; chance level {effect.chance:.3g}" if effect.chance else ""
    return Text(f"{effect.name} varied; the others held at: {held or '-'}{chance}", style="dim")


def render_text(analysis: Analysis, console: Console) -> None:
    """Print the analysis: overview, importances, effect tables with verdicts, ablation, notes."""
    console.print(overview_table(analysis))
    if analysis.importance.values or analysis.importance.note:
        console.print(importance_table(analysis, console.width))
    for condition in analysis.conditions:
        console.print(condition_table(condition, analysis.objective, console.width))
    for effect in analysis.effects:
        console.print(effect_table(effect, analysis.objective, console.width))
    for effect in analysis.ablation:
        console.print(center_line(effect))
        console.print(ablation_table(effect, analysis.objective, console.width))
    for effect in analysis.interactions:
        console.print(Text(f"{effect.label} crossed; the others held at: {held_values(effect.held) or '-'}",
                           style="dim"))
        console.print(interaction_table(effect, analysis.objective, console.width))
    for note in analysis.notes:
        console.print(Text(note, style="yellow"))
