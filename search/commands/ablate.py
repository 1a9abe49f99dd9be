"""``search ablate``: queue one-factor-at-a-time trials around the best configuration.

The configurations are ``search.analysis.ablation.plan``'s: for each named parameter each of its
values (a grid for a continuous one), every other parameter at the best search trial's value,
``repeats`` times. Each is queued in the same study with Optuna's ``enqueue_trial`` under the
bridge's parameter names (a ``reverse_log`` parameter as ``<name>.reverse_log_u``), tagged with
the user attribute ``ablation = {"param", "value", "repeat", "center"}`` (a two-factor grid's
trials also ``"pair"``, their value and center a pair), and the study's budget
grows by as many trials (one atomic update), so the study's workers (``search worker``, or a
resumed ``search start``) run them first. Repeats differ by their trial number, hence their seed
(``search.execution.runner.trial_seed``): their spread is the seed noise ``search analyze`` measures
effects against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from search import trial_attrs
from search.analysis import analyze as analyze_study
from search.errors import SearchError
from search.options import MAX_TRIALS
from search.space import ablation
from search.study import open_study

DEFAULT_REPEATS = 3
FEW_TRIALS = 10  # picking the factors from fewer completed search trials is a guess
DEFAULT_PARAMS = 3  # without --params: the most important parameters


@dataclass
class AblationQueued:
    study: str
    center_trial: int                 # the best search trial the ablation is centred on
    center_value: float
    params: list[str]
    repeats: int
    trials: list[dict] = field(default_factory=list)  # ablation.plan's entries, in queue order
    budget_before: int = 0
    budget_after: int = 0
    notes: list[str] = field(default_factory=list)


def ablate(study: str, *, storage: str | None = None, params: list[str] | None = None,
           repeats: int = DEFAULT_REPEATS, interaction: bool = False) -> AblationQueued:
    """Queue the ablation trials of ``params`` (default: the most important ones) around the best
    search trial, ``repeats`` each, and with ``interaction`` the grid of the first two crossed;
    returns what was queued."""
    import keras_tuner as kt

    from search.space.bridge import to_optuna_params

    if repeats < 1:
        raise SearchError(f"--repeats must be at least 1 (got {repeats})")
    stored = open_study(storage, study)
    config = stored.config
    if not config.space:
        raise SearchError(f"study {study!r} has no stored space to ablate over")
    result = analyze_study(stored.study, config.objective, space=config.space,
                           budget=stored.record.budget)
    best = result.overview["best"]
    if best is None:
        raise SearchError(f"study {study!r} has no completed search trial to ablate around")
    hps = kt.HyperParameters.from_config(config.space)
    trial = next(t for t in result.trials if t.number == best["number"])
    center = trial_attrs.hp_values(trial)
    notes = []
    fixed = [p for p in (params or []) if p in config.fixed]
    if fixed:
        raise SearchError(f"{', '.join(fixed)} fixed with --set for this study: nothing to ablate")
    if not params:
        tunable = {hp.name for hp in hps.space if type(hp).__name__ != "Fixed"}
        params = [e.name for e in result.effects
                  if e.name in tunable and e.name in center and e.name not in config.fixed][:DEFAULT_PARAMS]
        if not params:
            raise SearchError(f"study {study!r}: no tunable parameter to ablate; name some with --params")
        notes.append(f"no --params given: the {len(params)} most important "
                     f"({', '.join(params)})")
        complete = int(((result.frame["state"] == "COMPLETE") & result.frame["ablation_param"].isna()).sum())
        if complete < FEW_TRIALS:
            notes.append(f"only {complete} completed search trials: the most important parameters "
                         f"are a guess below {FEW_TRIALS}; name them with --params")
    planned = ablation.plan(center, hps, params, repeats, room=MAX_TRIALS - stored.record.budget,
                            interaction=interaction)
    for entry in planned:
        values = {k: v for k, v in to_optuna_params(hps, entry["params"]).items()
                  if k not in config.fixed}
        stored.study.enqueue_trial(values, user_attrs={trial_attrs.ABLATION: entry["ablation"]})
    before = stored.record.budget
    after = stored.records.grow_budget(study, len(planned))
    if stored.records.get(study).past_deadline:
        notes.append("the study's --timeout has passed: no trial starts until a resume without "
                     "--timeout (search start SPACE_FILE) lifts it")
    return AblationQueued(study, best["number"], best["value"], list(params), repeats, planned,
                          before, after, notes)
