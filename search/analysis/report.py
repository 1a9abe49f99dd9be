"""One self-contained HTML report: plotly.js embedded inline (opens offline, no network
reference), the overview, importances, an effect table + box plot per parameter, the lr curve,
trade-offs with their Pareto fronts, learning curves, parallel coordinates, ablation, notes.
Every user-controlled string (study name, parameter values, failure reasons) is HTML-escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import optuna
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from search.analysis import figures
from search.analysis.study_analysis import Analysis
from search.console.format import duration, number, param_value

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.verdict { font-weight: bold; } .note { color: #8a5a00; } .failure { color: #a00; }
section { margin-bottom: 2em; } .figure { min-height: 300px; }
"""

EFFECT_HEADERS = {"value": "value", "trials": "trials", "complete": "complete", "mean": "mean",
                  "ci_low": "95% low", "ci_high": "95% high", "median": "median", "best": "best",
                  "sec_per_epoch": "s/epoch", "gap": "train-val gap", "pruned": "pruned",
                  "failed": "failed", "diverged": "diverged"}


# C0 controls other than whitespace: a parse error in an HTML document. plotly.js carries two
# raw ones inside JavaScript string literals, where the \xNN escape stands for the same character.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


def plotly_script() -> str:
    """plotly.js, inline-safe: no ``</script`` in it, control characters escaped."""
    source = get_plotlyjs()
    if "</script" in source.lower():  # cannot happen with plotly's bundle; never emit broken HTML
        raise RuntimeError("plotly.js contains '</script'")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", source)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _figure(fig, div_id: str) -> str:
    if fig is None:
        return ""
    body = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height=f"{fig.layout.height or 420}px",
                       config={"displaylogo": False, "responsive": True})
    return f'<div class="figure">{body}</div>'


def _table(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if column == "value" or column == "center":
            shown[column] = shown[column].map(param_value)
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(number)
    return shown.to_html(index=False, escape=True, border=0, na_rep="-")


def _overview(analysis: Analysis) -> str:
    o = analysis.overview
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(o["states"].items()))
    rows = [("trials", f"{o['trials']} ({states})"),
            ("objective", f"{analysis.objective} ({analysis.direction})"),
            ("training time", (f"{duration(o['train_seconds'])} in fit, "
                               f"{duration(o['trial_seconds'])} in trials"))]
    if o["budget"]:
        rows.insert(1, ("budget used", f"{o['finished']} of {o['budget']} ({o['budget_used']:.0%})"))
    if o["best"]:
        best = o["best"]
        config = ", ".join(f"{k}={param_value(v)}" for k, v in best["params"].items())
        rows.append(("best", f"trial {best['number']}: {number(best['value'], 4)} ({config})"))
    if o["baseline"]:
        b = o["baseline"]
        rows.append(("baseline", f"trial {b['number']}: {number(b['value'], 4)} ({b['state'].lower()})"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    failures = "".join(f'<tr><td class="failure">{_e(reason)}</td><td>{count}</td></tr>'
                       for reason, count in o["failure_reasons"].items())
    failures = (f"<h3>Most frequent failures</h3><table><tr><th>reason</th><th>trials</th></tr>"
                f"{failures}</table>") if failures else ""
    return f"<table>{body}</table>{failures}"


def render_html(analysis: Analysis, study: optuna.Study) -> str:
    """The report as one HTML string."""
    parts = [f"<h1>Study {_e(analysis.study_name)}</h1>",
             f"<section id=\"overview\"><h2>Overview</h2>{_overview(analysis)}</section>"]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in analysis.notes)
    if notes:
        parts.append(f'<section id="notes">{notes}</section>')
    parts.append('<section id="importance"><h2>Importance</h2>'
                 + (f"<p>{_e(analysis.importance.note)}</p>" if analysis.importance.note else "")
                 + _figure(figures.importance_bar(analysis), "fig-importance") + "</section>")
    effects = []
    for i, effect in enumerate(analysis.effects):
        importance = (f", importance {effect.importance:.3f}" if effect.importance is not None else "")
        effects.append(f"<h3>{_e(effect.name)} <small>({_e(effect.kind)}{importance})</small></h3>"
                       f'<p class="verdict">{_e(effect.verdict)}</p>'
                       f"{_table(effect.rows.rename(columns=EFFECT_HEADERS))}"
                       + _figure(figures.effect_box(analysis, effect), f"fig-effect-{i}"))
    parts.append('<section id="effects"><h2>Effects of each parameter (search trials)</h2>'
                 + "".join(effects) + "</section>")
    if analysis.ablation:
        blocks = "".join(f"<h3>{_e(a.name)} around {_e(param_value(a.center))}</h3>"
                         f'<p class="verdict">{_e(a.verdict)}</p>{_table(a.rows)}'
                         for a in analysis.ablation)
        parts.append(f'<section id="ablation"><h2>Ablation (controlled, one factor at a time)</h2>'
                     f"{blocks}</section>")
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
    parts.append('<section id="figures"><h2>Figures</h2>'
                 + "".join(_figure(fig, div_id) for fig, div_id in plots) + "</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>search analyze: {_e(analysis.study_name)}</title><style>{STYLE}</style>"
            f"<script type=\"text/javascript\">{plotly_script()}</script></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_html(analysis: Analysis, study: optuna.Study, path) -> Path:
    """Write the self-contained report to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(analysis, study), encoding="utf-8")
    return path
