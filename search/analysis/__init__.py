"""What each hyperparameter did: effect tables, verdicts, importances, ablation, the HTML report.

Pure computation over a study's trials (no Keras, no store writes)::

    from search.analysis import analyze, write_html, trials_frame
    result = analyze(study, "val_accuracy", space=hyperparameters)
    json.dumps(result.to_dict())
    write_html(result, study, "reports/cnn.html")      # plotly and Jinja2, loaded here only
    trials_frame(study).to_csv("trials.csv", index=False)

The terminal tables of an analysis are ``search.console.analysis``.
"""

from search.analysis.ablation_effects import AblationEffect
from search.analysis.effects import ParamEffect
from search.analysis.frame import trials_frame
from search.analysis.importance import Importances
from search.analysis.study_analysis import Analysis, analyze

__all__ = [
    "AblationEffect",
    "Analysis",
    "Importances",
    "ParamEffect",
    "analyze",
    "trials_frame",
    "write_html",
]


def write_html(analysis, study, path):
    """Write the analysis as a self-contained HTML report (``search.analysis.report``)."""
    from search.analysis.report import write_html as write

    return write(analysis, study, path)
