"""One self-contained HTML report: plotly.js embedded inline (opens offline, no network
reference), the overview, importances, an effect table + box plot per parameter, the lr curve,
trade-offs with their Pareto fronts, learning curves, parallel coordinates, ablation, notes.

The page is the Jinja2 template ``templates/report.html.j2``, rendered with autoescape on: every
user-controlled string (study name, parameter names and values, failure reasons, verdicts, table
cells) is HTML-escaped by Jinja2. Only plotly.js and plotly's figure markup are passed as
``markupsafe.Markup``."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jinja2
import optuna
import pandas as pd
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from search.analysis import figures
from search.analysis.study_analysis import Analysis
from search.console.format import held_values, number, param_value, significant, training_time

TEMPLATE = "report.html.j2"

EFFECT_HEADERS = {"value": "value", "trials": "trials", "complete": "complete", "pruned": "pruned",
                  "failed": "failed", "diverged": "diverged", "modelled": "modelled",
                  "model_mean": "mean (model)", "model_low": "95% low", "model_high": "95% high",
                  "effect": "effect", "effect_low": "effect 95% low", "effect_high": "effect 95% high",
                  "row_verdict": "verdict", "vs_best": "vs best", "vs_best_low": "vs best 95% low",
                  "vs_best_high": "vs best 95% high", "mean": "completed mean",
                  "ci_low": "completed 95% low", "ci_high": "completed 95% high", "median": "median",
                  "best": "best", "sec_per_epoch": "s/epoch (steady)",
                  "sec_per_epoch_model": "s/epoch (model)", "ms_per_step": "ms/step (steady)",
                  "first_epoch_s": "1st epoch s", "gap": "train-val gap"}

MISSING = "-"  # a table cell without a value


# C0 controls other than whitespace: a parse error in an HTML document. plotly.js carries two
# raw ones inside JavaScript string literals, where the \xNN escape stands for the same character.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


def plotly_script() -> str:
    """plotly.js, inline-safe: no ``</script`` in it, control characters escaped."""
    source = get_plotlyjs()
    if "</script" in source.lower():  # cannot happen with plotly's bundle; never emit broken HTML
        raise RuntimeError("plotly.js contains '</script'")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", source)


@functools.cache
def _environment() -> jinja2.Environment:
    """The template environment, created on the first report."""
    return jinja2.Environment(loader=jinja2.PackageLoader("search.analysis", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _figure(fig, div_id: str) -> Markup | None:
    """plotly's markup for one figure (trusted: no user string reaches it unescaped)."""
    if fig is None:
        return None
    body = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height=f"{fig.layout.height or 420}px",
                       config={"displaylogo": False, "responsive": True})
    return Markup(body)


def _cell(value) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    return str(value)


def _table(frame: pd.DataFrame) -> dict:
    """A frame as plain text cells for the template: ``{"columns": [...], "rows": [[...]]}``."""
    shown = frame.copy()
    for column in shown.columns:
        if column == "value" or column == "center":
            shown[column] = shown[column].map(param_value)
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(number)
    return {"columns": [str(c) for c in shown.columns],
            "rows": [[_cell(v) for v in row] for row in shown.itertuples(index=False, name=None)]}


def _overview(analysis: Analysis) -> list[tuple[str, str]]:
    o = analysis.overview
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(o["states"].items()))
    rows = [("trials", f"{o['trials']} ({states})"),
            ("objective", f"{analysis.objective} ({analysis.direction})"),
            ("training time", training_time(o["train_seconds"], o["trial_seconds"]))]
    if o["budget"]:
        rows.insert(1, ("budget used", f"{o['finished']} of {o['budget']} ({o['budget_used']:.0%})"))
    if o["best"]:
        best = o["best"]
        config = ", ".join(f"{k}={param_value(v)}" for k, v in best["params"].items())
        rows.append(("best", f"trial {best['number']}: {number(best['value'], 4)} ({config})"))
    if o["baseline"]:
        b = o["baseline"]
        rows.append(("baseline", f"trial {b['number']}: {number(b['value'], 4)} ({b['state'].lower()})"))
    return rows


def _time_cost(rows: pd.DataFrame) -> str:
    """Steady seconds per epoch across a factor's values: ``0.75 (256) .. 2.5 (32) s/epoch``."""
    timed = rows[rows["sec_per_epoch"].notna()]
    if timed.empty:
        return MISSING
    fast = timed.loc[timed["sec_per_epoch"].idxmin()]
    slow = timed.loc[timed["sec_per_epoch"].idxmax()]
    if len(timed) == 1 or fast["sec_per_epoch"] == slow["sec_per_epoch"]:
        return f"{significant(fast['sec_per_epoch'])} s/epoch"
    return (f"{significant(fast['sec_per_epoch'])} ({param_value(fast['value'])}) .. "
            f"{significant(slow['sec_per_epoch'])} ({param_value(slow['value'])}) s/epoch")


def answers(analysis: Analysis) -> dict:
    """The report's first screen: per factor its verdict, best value with mean and interval, and
    time cost; per ablated factor its verdict."""
    rows = []
    for effect in analysis.effects:
        judged = effect.rows[effect.rows["row_verdict"] != "too few trials"]
        if judged.empty:
            best, interval = MISSING, MISSING
        else:
            top = judged.loc[judged["model_mean"].idxmax() if analysis.maximize
                             else judged["model_mean"].idxmin()]
            best = f"{param_value(top['value'])}: {number(top['model_mean'])}"
            interval = f"{number(top['model_low'])}..{number(top['model_high'])}"
        rows.append([effect.name, effect.kind, effect.verdict.split(": ", 1)[-1], best, interval,
                     _time_cost(effect.rows)])
    return {"columns": ["factor", "kind", "verdict (search trials, model-based)", "best value: mean",
                        "95% interval", "time cost (steady)"],
            "rows": rows,
            "ablation": [[a.name, a.verdict] for a in analysis.ablation]
            + [[i.label, i.verdict] for i in analysis.interactions]}


def render_html(analysis: Analysis, study: optuna.Study) -> str:
    """The report as one HTML string."""
    importance_figure = _figure(figures.importance_bar(analysis), "fig-importance")
    effects = [{"name": effect.name, "kind": effect.kind,
                "importance": (f"{effect.importance:.3f}" if effect.importance is not None else None),
                "verdict": effect.verdict,
                "table": _table(effect.rows.rename(columns=EFFECT_HEADERS)),
                "figure": _figure(figures.effect_box(analysis, effect), f"fig-effect-{i}")}
               for i, effect in enumerate(analysis.effects)]
    ablation = [{"name": a.name, "center": param_value(a.center), "verdict": a.verdict,
                 "held": held_values(a.held),
                 "chance": number(a.chance) if a.chance else None,
                 "table": _table(a.rows)} for a in analysis.ablation]
    interactions = [{"name": i.label, "verdict": i.verdict,
                     "held": held_values(i.held),
                     "table": _table(i.cells.assign(first=i.cells["first"].map(param_value),
                                                    second=i.cells["second"].map(param_value))
                                     .rename(columns={"first": i.pair[0], "second": i.pair[1]})),
                     "figure": _figure(figures.interaction_heatmap(analysis, i), f"fig-interaction-{n}")}
                    for n, i in enumerate(analysis.interactions)]
    plots = [
        (figures.lr_curve(analysis), "fig-lr"),
        (figures.optimization_history(analysis), "fig-history"),
        (figures.tradeoff(analysis, "train_seconds", "training seconds"), "fig-time"),
        (figures.tradeoff(analysis, "trainable_params", "trainable parameters", log_x=True),
         "fig-params"),
        (figures.learning_curves(analysis), "fig-curves"),
        (figures.slice_plot(analysis), "fig-slice"),
        (figures.parallel_coordinates(analysis), "fig-parallel"),
    ]
    return _environment().get_template(TEMPLATE).render(
        study_name=analysis.study_name,
        answers=answers(analysis),
        effects_figure=_figure(figures.effects_forest(analysis), "fig-effects"),
        ablation_figure=_figure(figures.ablation_forest(analysis), "fig-ablation"),
        conditions=[{"name": c.name, "table": _table(c.rows.rename(columns=EFFECT_HEADERS))}
                    for c in analysis.conditions],
        plotly_js=Markup(plotly_script()),
        overview=_overview(analysis),
        failures=list(analysis.overview["failure_reasons"].items()),
        notes=list(analysis.notes),
        importance_note=analysis.importance.note,
        importance_figure=importance_figure,
        effects=effects,
        ablation=ablation,
        interactions=interactions,
        figures=[body for body in (_figure(fig, div_id) for fig, div_id in plots) if body is not None],
    )


def write_html(analysis: Analysis, study: optuna.Study, path) -> Path:
    """Write the self-contained report to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(analysis, study), encoding="utf-8")
    return path
