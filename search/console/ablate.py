"""The terminal table of ``search ablate``: what was queued around the best trial."""

from __future__ import annotations

from collections import Counter

from rich.table import Table
from rich.text import Text

from search.console.format import metric, param_value


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
        if "pair" in tag:
            continue  # the two-factor grid: one row below
        key = (tag["param"], repr(tag["value"]))
        if key in seen:
            continue
        seen.add(key)
        label = param_value(tag["value"])
        if repr(tag["value"]) == repr(tag["center"]):
            label += " (best, the reference)"
        table.add_row(Text(tag["param"]), Text(label), str(counts[key]))
    crossed = [e["ablation"] for e in queued.trials if "pair" in e["ablation"]]
    if crossed:
        sizes = [len({repr(t["value"][i]) for t in crossed}) for i in (0, 1)]
        cells = len({repr(t["value"]) for t in crossed})
        table.add_row(Text(crossed[0]["param"]), Text(f"{sizes[0]} x {sizes[1]} grid ({cells} cells)"),
                      str(len(crossed)))
    return table


def print_queued(console, queued) -> None:
    """``search ablate``'s output: notes, the table, what was queued and how to run it."""
    from rich.markup import escape

    for note in queued.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(ablation_table(queued))
    study = escape(queued.study)
    console.print(f"Queued {len(queued.trials)} ablation trials in study [bold]{study}[/bold] "
                  f"around trial #{queued.center_trial} ({metric(queued.center_value)}); "
                  f"budget {queued.budget_before} -> {queued.budget_after} trials.")
    console.print(f"Run them: search worker --study {study}   then: search analyze --study "
                  f"{study}", highlight=False)
