"""The HTML report in a real headless browser: every figure drawn, no console error, the user
strings shown as text (the report's file itself: tests/unit/analysis/test_report.py)."""

import html
import re
import shutil
import subprocess

import optuna
import pytest

from search.testing.reports import XSS, report_with_a_script

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--enable-logging=stderr", "--v=0", "--virtual-time-budget=30000", "--dump-dom"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return report_with_a_script(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed: apt-get install chromium (.ci/run installs it)")
    return path


def browse(chromium, path, tmp_path):
    """The DOM after the page ran, and the browser's console/script errors."""
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             path.resolve().as_uri()], check=False, capture_output=True, text=True,
                            timeout=300)
    errors = [line for line in result.stderr.splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    return result.stdout, errors


def test_browser_console_errors_are_detected(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction()</script></body></html>")
    _, errors = browse(chromium, page, tmp_path)
    assert any("undefinedFunction" in e for e in errors)


def test_every_figure_renders_in_a_headless_browser(report, chromium, tmp_path):
    _, path, text = report
    dom, errors = browse(chromium, path, tmp_path)
    assert errors == []
    ids = re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div', text)
    starts = [(m.start(), m.group(1)) for m in
              re.finditer(r'<div id="(fig-[^"]+)" class="plotly-graph-div[^"]*"', dom)]
    assert [i for _, i in starts] == ids
    for (start, div_id), (end, _) in zip(starts, [*starts[1:], (len(dom), None)]):
        chunk = dom[start:end]
        assert "js-plotly-plot" in chunk[:200], div_id         # plotly took the div over
        assert 'class="main-svg"' in chunk, div_id             # and drew its SVG
    assert XSS not in dom                                      # never became a script element
    assert f"Study digits {html.escape(XSS)}" in dom           # shown as text
