"""What each hyperparameter did: effect tables, verdicts, importances, ablation, reports.

    from search.analysis import analyze, render_text, write_html, trials_frame
    result = analyze(study, "val_accuracy", space=hyperparameters)
    render_text(result, rich.console.Console())
    json.dumps(result.to_dict())
    write_html(result, study, "reports/cnn.html")
    trials_frame(study).to_csv("trials.csv", index=False)

    from search.analysis import ablation
    ablation.plan(best_values, hyperparameters, ["learning_rate", "optimizer"], repeats=3)
"""

from search.analysis import ablation
from search.analysis.ablation_effects import AblationEffect
from search.analysis.analysis import Analysis, analyze
from search.analysis.effects import ParamEffect
from search.analysis.frame import trials_frame
from search.analysis.importance import Importances
from search.analysis.render import render_text
from search.analysis.report import write_html

__all__ = [
           "AblationEffect",
           "Analysis",
           "Importances",
           "ParamEffect",
           "ablation",
           "analyze",
           "render_text",
           "trials_frame",
           "write_html",
]
