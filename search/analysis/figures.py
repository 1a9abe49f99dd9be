"""The report's plotly figures. Optuna's own visualizations where they exist and stay cheap on big
studies (optimization history, slice, parallel coordinates up to ``OPTUNA_PARALLEL_MAX_TRIALS``:
Optuna's takes 6-7 s at 10,000 trials); plotly figures of the analysis frame for the rest.

Every user-controlled string put into a figure (parameter values) is HTML-escaped: plotly renders
labels as pseudo-HTML and turns entities back into the characters they stand for."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import optuna
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from search import trial_attrs
from search.analysis.effects import ParamEffect
from search.analysis.scales import group_keys
from search.analysis.study_analysis import Analysis
from search.console.format import param_value

OPTUNA_PARALLEL_MAX_TRIALS = 1000
TOP_CURVES = 5
LR_NAME = re.compile(r"(^|[._])(lr|learning_rate)$", re.IGNORECASE)
TEMPLATE = "plotly_white"


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, template=TEMPLATE, height=height,
                      margin={"l": 60, "r": 30, "t": 60, "b": 50})
    return fig


def _complete(analysis: Analysis) -> pd.DataFrame:
    f = analysis.frame
    return f[(f["state"] == "COMPLETE") & f["value"].notna() & f["ablation_param"].isna()]


def optimization_history(analysis: Analysis) -> go.Figure:
    fig = optuna.visualization.plot_optimization_history(analysis.view, target_name=analysis.objective)
    return _layout(fig, "Optimization history (search trials)")


def slice_plot(analysis: Analysis) -> go.Figure:
    fig = optuna.visualization.plot_slice(analysis.view, target_name=analysis.objective)
    return _layout(fig, "Slice plot", height=420)


def parallel_coordinates(analysis: Analysis) -> go.Figure:
    complete = _complete(analysis)
    if len(complete) <= OPTUNA_PARALLEL_MAX_TRIALS:
        fig = optuna.visualization.plot_parallel_coordinate(analysis.view,
                                                            target_name=analysis.objective)
        return _layout(fig, "Parallel coordinates")
    dims = []
    for effect in analysis.effects:
        column = complete["hp." + effect.name]
        if column.isna().any():
            continue
        if effect.scale.categorical:
            keys, order = group_keys(column, effect.scale)
            codes = {repr(k): i for i, k in enumerate(order)}
            dims.append({"label": effect.name, "values": [codes[repr(k)] for k in keys],
                             "tickvals": list(range(len(order))),
                             "ticktext": [html.escape(param_value(k)) for k in order]})
        elif effect.scale.log:
            dims.append({"label": f"log10 {effect.name}", "values": np.log10(column.astype(float))})
        else:
            dims.append({"label": effect.name, "values": column.astype(float)})
    dims.append({"label": analysis.objective, "values": complete["value"]})
    fig = go.Figure(go.Parcoords(line={"color": complete["value"], "colorscale": "Viridis",
                                           "showscale": True}, dimensions=dims))
    return _layout(fig, f"Parallel coordinates ({len(complete)} completed trials)")


def importance_bar(analysis: Analysis) -> go.Figure | None:
    values = analysis.importance.values
    if not values:
        return None
    names = list(values)[::-1]
    fig = go.Figure(go.Bar(x=[values[n] for n in names], y=names, orientation="h"))
    fig.update_xaxes(title="importance (share)")
    return _layout(fig, f"Importance ({analysis.importance.method}, "
                        f"{analysis.importance.trials} completed trials)",
                   height=max(250, 60 + 35 * len(names)))


def effect_box(analysis: Analysis, effect: ParamEffect) -> go.Figure:
    """The objective per row of the effect table (box), with each row's trial count."""
    complete = _complete(analysis)
    column = complete["hp." + effect.name]
    complete, column = complete[column.notna()], column[column.notna()]
    keys, order = group_keys(column, effect.scale)
    labels = {repr(k): html.escape(param_value(k)) for k in order}
    x = [labels[repr(k)] for k in keys]
    fig = go.Figure(go.Box(x=x, y=complete["value"], boxpoints="outliers", name=effect.name))
    fig.update_xaxes(title=html.escape(effect.name), type="category",
                     categoryorder="array", categoryarray=[labels[repr(k)] for k in order])
    fig.update_yaxes(title=analysis.objective)
    return _layout(fig, f"{html.escape(effect.name)}: {analysis.objective} per "
                        f"{'value' if effect.scale.categorical else 'bin'}", height=360)


def lr_effect(analysis: Analysis) -> ParamEffect | None:
    """The learning rate's effect (by name), else the most important log-scaled parameter."""
    named = [e for e in analysis.effects if LR_NAME.search(e.name) and not e.scale.categorical]
    logs = [e for e in analysis.effects if e.scale.log and not e.scale.categorical]
    return (named or logs or [None])[0]


def lr_curve(analysis: Analysis) -> go.Figure | None:
    effect = lr_effect(analysis)
    if effect is None:
        return None
    f = analysis.frame[analysis.frame["ablation_param"].isna()]
    column = "hp." + effect.name
    done = f[(f["state"] == "COMPLETE") & f[column].notna()]
    failed = f[(f["state"] == "FAIL") & f[column].notna()]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=done[column], y=done["value"], mode="markers", name="trials",
                             marker={"size": 5, "opacity": 0.5}))
    rows = effect.rows.dropna(subset=["mean"])
    if effect.scale.log:
        centers = [math.sqrt(float(a) * float(b)) for a, b in
                   (str(v).split("..") for v in rows["value"])]
    else:
        centers = [sum(float(x) for x in str(v).split("..")) / 2 for v in rows["value"]]
    fig.add_trace(go.Scatter(x=centers, y=rows["mean"], mode="lines+markers", name="mean per bin",
                             error_y={"type": "data", "symmetric": False,
                                          "array": (rows["ci_high"] - rows["mean"]).fillna(0),
                                          "arrayminus": (rows["mean"] - rows["ci_low"]).fillna(0)}))
    if len(failed):
        floor = float(done["value"].min()) if len(done) else 0.0
        fig.add_trace(go.Scatter(x=failed[column], y=[floor] * len(failed), mode="markers",
                                 name="failed / diverged", marker={"symbol": "x", "color": "red"}))
    fig.update_xaxes(title=html.escape(effect.name), type="log" if effect.scale.log else "linear")
    fig.update_yaxes(title=analysis.objective)
    return _layout(fig, f"{html.escape(effect.name)} curve: {analysis.objective} with the 95% "
                        "interval of each bin's mean")


def pareto_mask(cost: pd.Series, objective: pd.Series, maximize: bool) -> pd.Series:
    """Trials no other trial beats on both (lower cost, better objective)."""
    score = objective if maximize else -objective
    order = pd.DataFrame({"cost": cost, "score": score}).sort_values(["cost", "score"],
                                                                      ascending=[True, False])
    running = order["score"].cummax()
    front = order["score"] > running.shift(fill_value=-np.inf)
    return front.reindex(cost.index)


def tradeoff(analysis: Analysis, cost: str, label: str, log_x: bool = False) -> go.Figure | None:
    done = _complete(analysis).dropna(subset=[cost])
    if done.empty:
        return None
    x = done[cost].astype(float)
    front = pareto_mask(x, done["value"], analysis.maximize)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=done["value"], mode="markers", name="trials",
                             text=[f"trial {n}" for n in done["number"]],
                             marker={"size": 5, "opacity": 0.5}))
    edge = done[front].sort_values(cost)
    fig.add_trace(go.Scatter(x=edge[cost].astype(float), y=edge["value"], mode="lines+markers",
                             name="Pareto front", text=[f"trial {n}" for n in edge["number"]],
                             line={"shape": "hv", "color": "crimson"}, marker={"size": 8}))
    fig.update_xaxes(title=label, type="log" if log_x else "linear")
    fig.update_yaxes(title=analysis.objective)
    return _layout(fig, f"{analysis.objective} vs {label} (Pareto front marked)")


def learning_curves(analysis: Analysis, top: int = TOP_CURVES) -> go.Figure | None:
    done = _complete(analysis)
    if done.empty:
        return None
    best = done.sort_values("value", ascending=not analysis.maximize).head(top)["number"].tolist()
    trials = {t.number: t for t in analysis.trials if t.number in set(best)}
    train_metric = analysis.objective[len("val_"):] if analysis.objective.startswith("val_") else None
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for i, number in enumerate(best):
        history = trials[number].user_attrs.get(trial_attrs.HISTORY) or {}
        color = palette[i % len(palette)]
        curve = history.get(analysis.objective)
        if curve:
            fig.add_trace(go.Scatter(x=list(range(1, len(curve) + 1)), y=curve, mode="lines+markers",
                                     name=f"#{number} {analysis.objective}", line={"color": color}))
        if train_metric and history.get(train_metric):
            curve = history[train_metric]
            fig.add_trace(go.Scatter(x=list(range(1, len(curve) + 1)), y=curve, mode="lines",
                                     name=f"#{number} {train_metric}",
                                     line={"color": color, "dash": "dot"}))
    if not fig.data:
        return None
    fig.update_xaxes(title="epoch")
    return _layout(fig, f"Learning curves of the {len(best)} best trials (dotted: training)")


VERDICT_COLORS = {"helps": "#1a7f37", "hurts": "#c62828", "no effect detected": "#666666",
                  "too few trials": "#bbbbbb"}


def _forest(labels: list[str], means: list, lows: list, highs: list, colors: list[str], title: str,
            x_title: str, reference: float | None = None) -> go.Figure:
    """Estimates with 95% intervals, one line per label, top to bottom (a forest plot)."""
    fig = go.Figure(go.Scatter(
        x=means, y=labels, mode="markers", marker={"color": colors, "size": 9},
        error_x={"type": "data", "symmetric": False,
                 "array": [h - m if pd.notna(h) and pd.notna(m) else 0 for m, h in zip(means, highs)],
                 "arrayminus": [m - lo if pd.notna(lo) and pd.notna(m) else 0 for m, lo in zip(means, lows)]},
        hovertemplate="%{y}: %{x:.3g}<extra></extra>"))
    if reference is not None:
        fig.add_vline(x=reference, line_dash="dot", line_color="#999")
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    fig.update_xaxes(title=x_title, tickformat=".3~g", automargin=True)
    return _layout(fig, title, height=120 + 22 * len(labels))


def effects_forest(analysis: Analysis) -> go.Figure | None:
    """Every factor's model-based mean per value with its 95% interval, coloured by verdict."""
    labels, means, lows, highs, colors = [], [], [], [], []
    for effect in analysis.effects:
        for r in effect.rows.itertuples():
            if pd.isna(r.model_mean):
                continue
            labels.append(html.escape(f"{effect.name} = {param_value(r.value)}"))
            means.append(r.model_mean)
            lows.append(r.model_low)
            highs.append(r.model_high)
            colors.append(VERDICT_COLORS.get(r.row_verdict, "#666666"))
    if not labels:
        return None
    return _forest(labels, means, lows, highs, colors,
                   "Effects: model mean per value, 95% interval (green helps, red hurts)",
                   f"mean {analysis.objective}")


def ablation_forest(analysis: Analysis) -> go.Figure | None:
    """Each ablated value's effect against the center with its Welch 95% interval."""
    labels, means, lows, highs, colors = [], [], [], [], []
    for effect in analysis.ablation:
        for r in effect.rows.itertuples():
            if pd.isna(r.effect):
                continue
            labels.append(html.escape(f"{effect.name} = {param_value(r.value)}"))
            means.append(r.effect)
            lows.append(r.effect_low)
            highs.append(r.effect_high)
            clear = pd.notna(r.effect_low) and (r.effect_low > 0 or r.effect_high < 0)
            better = clear and (r.effect_low > 0) == analysis.maximize
            colors.append("#1a7f37" if better else "#c62828" if clear else "#666666")
    if not labels:
        return None
    return _forest(labels, means, lows, highs, colors,
                   "Ablation: effect against the center, 95% Welch interval",
                   f"difference in {analysis.objective}", reference=0.0)


def interaction_heatmap(analysis: Analysis, effect) -> go.Figure | None:
    """A two-factor ablation grid: each cell's mean objective over its completed repeats."""
    cells = effect.cells[effect.cells["complete"] > 0]
    if cells.empty:
        return None
    rows, columns = effect.first_values, effect.second_values
    means = {(repr(r.first), repr(r.second)): r for r in cells.itertuples()}
    z = [[means[(repr(a), repr(b))].mean if (repr(a), repr(b)) in means else None for b in columns]
         for a in rows]
    text = [["" if (repr(a), repr(b)) not in means else
             f"{means[(repr(a), repr(b))].mean:.3f} ({means[(repr(a), repr(b))].complete})" for b in columns]
            for a in rows]
    first, second = effect.pair
    fig = go.Figure(go.Heatmap(
        z=z, x=[html.escape(param_value(b)) for b in columns], y=[html.escape(param_value(a)) for a in rows],
        text=text, texttemplate="%{text}", colorscale="Viridis", colorbar={"title": analysis.objective},
        hovertemplate=f"{html.escape(first)}=%{{y}}<br>{html.escape(second)}=%{{x}}<br>mean %{{z:.4f}}<extra></extra>"))
    fig.update_xaxes(title=html.escape(second), type="category")
    fig.update_yaxes(title=html.escape(first), type="category")
    return _layout(fig, html.escape(f"Interaction: {first} x {second} (mean of the completed repeats)"),
                   height=max(320, 60 * len(rows) + 160))

