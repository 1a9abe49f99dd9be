"""The HTML report: one valid, self-contained file (plotly.js inline, no network reference),
every user-controlled string escaped (every figure drawn by a real headless browser:
tests/e2e/test_report.py)."""

import html
import re
from html.parser import HTMLParser

import optuna
import pytest

from search.analysis import figures
from search.testing.reports import XSS, report_with_a_script

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Collector(HTMLParser):
    """Tags, their attributes and the text outside scripts; checks that elements nest."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.text, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if not self.stack or self.stack[-1] != "script":
            self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return report_with_a_script(tmp_path_factory.mktemp("report"))


def test_report_is_valid_html(report):
    _, path, text = report
    assert path.exists() and text.startswith("<!DOCTYPE html>")
    parser = Collector()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse(text)  # raises on any parse error


def test_report_embeds_plotly_and_references_no_network(report):
    _, _, text = report
    parser = Collector()
    parser.feed(text)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all("src" not in attrs for attrs in scripts)
    for tag, attrs in parser.tags:
        for name in ("src", "href", "data"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name) or ""), (tag, attrs)
    assert not any(tag in ("link", "iframe", "img") for tag, _ in parser.tags)
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js itself is inline
    assert not re.search(r"<script[^>]+src=", text)


def test_report_has_every_section_and_figure(report):
    result, _, text = report
    ids = re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div', text)
    expected = {"fig-importance", "fig-lr", "fig-history", "fig-time", "fig-params", "fig-curves",
                "fig-slice", "fig-parallel", "fig-effects", "fig-ablation", "fig-interaction-0"} | {
                    f"fig-effect-{i}" for i in range(len(result.effects))}
    assert set(ids) == expected
    for section in ("answers", "overview", "importance", "effects", "ablation", "interactions", "figures",
                    "notes"):
        assert f'<section id="{section}">' in text
    # the answers come first: each factor's verdict, before the overview
    answers = text[text.index('<section id="answers">'):text.index('<section id="overview">')]
    for effect in result.effects:
        assert html.escape(effect.verdict.split(": ", 1)[1]) in answers
    assert text.index("fig-effects") < text.index('<section id="overview">')
    for effect in result.effects:
        assert html.escape(effect.verdict) in text
    assert "Pareto front" in text


def test_user_strings_appear_only_escaped(report):
    _, _, text = report
    assert XSS not in text
    assert "alert(1)</script>" not in text
    assert html.escape(XSS) in text                       # study name, value, failure reason
    assert f"Study digits {html.escape(XSS)}" in text
    assert f"fit: ValueError: {html.escape(XSS)}" in text
    parser = Collector()
    parser.feed(text)
    assert sum(1 for tag, _ in parser.tags if tag == "script") == 1 + text.count("Plotly.newPlot")


def test_big_study_parallel_coordinates_use_plotly_parcoords(report, monkeypatch):
    result, _, _ = report
    monkeypatch.setattr(figures, "OPTUNA_PARALLEL_MAX_TRIALS", 10)
    fig = figures.parallel_coordinates(result)
    assert fig.data[0].type == "parcoords"
    labels = [d.label for d in fig.data[0].dimensions]
    assert "log10 learning_rate" in labels and labels[-1] == "val_accuracy"
    ticks = [t for d in fig.data[0].dimensions if d.ticktext for t in d.ticktext]
    assert html.escape(XSS) in ticks and XSS not in ticks


def test_pareto_front():
    import pandas as pd
    cost = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    value = pd.Series([0.5, 0.4, 0.7, 0.7, 0.9])
    assert figures.pareto_mask(cost, value, True).tolist() == [True, False, True, False, True]
    assert figures.pareto_mask(cost, value, False).tolist() == [True, True, False, False, False]
