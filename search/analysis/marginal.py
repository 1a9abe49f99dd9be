"""Model-based marginal effects of the search trials: every finished trial counts, pruned ones too.

A search trial's mean per value is confounded (the sampler tries good values more often, together)
and, over completed trials only, biased: the pruner stops the bad ones. Here an additive
main-effects model is fitted to every completed and pruned trial, a trial entering once per epoch
of a common set (the epochs at which trials stopped, the completed trials' length last) with its
best objective up to that epoch::

    objective(trial, epoch) = epoch effect + sum over factors of the effect of the trial's value

(least squares on one-hot codes: a value or a bin per factor, "absent" for a conditional one).
A pruned trial thus enters through its value at the epoch it stopped, compared with completed
trials at that same epoch. The marginal (partial-dependence) mean of a value is the model's
prediction averaged over the trials' other values, at the completed trials' epoch count. Its 95%
interval is the percentile bootstrap over trials (resampled with their epochs together), kept
inside the metric's range. A value's effect is its mean minus the average of the factor's values
(``helps``/``hurts`` when its interval, widened for the number of values compared (Bonferroni),
excludes 0); ``vs_best`` is its mean minus the best value's,
bootstrapped the same way. A value none of whose trials ran to the final epoch (``reached_epoch``
below it: always pruned) is extrapolated; its best objective can only have improved after that
epoch, so its intervals are widened to cover the model's mean at the epoch it stopped at too.
Every interval is also widened to cover a second reading: the same model fitted to the completed
trials alone (a value no completed trial has: none). A pruned trial's value at the epoch it
stopped need not tell its final one: on a real digits study, 4 of a learning-rate bin's 11 trials
were pruned after their first epoch, the model read them as low to the end and called the bin
worse by 0.27, where plain Keras trained the same configurations to within 0.02 of the best
(``bench/search_truth.py``). So a value is called better or worse only when both readings agree.

Whether a factor matters at all is one test per factor, not one per value: a permutation test
of the same model (Manly's: the factor's values shuffled among the trials, every trial's other
values and epochs kept, the model refitted; ``PERMUTATIONS`` times). Its statistic is the model's
residual sum of squares: the share of shuffles that fit as well as the trials' real values is
the p-value (``factor_p``, in each factor frame's ``attrs``). One test a factor needs no
correction for its number of values, and the verdicts compare values only within a factor whose
test passes (``search.analysis.effects.verdict``), which keeps a null factor's false calls near
the test's level (the bootstrap's per-value intervals alone are optimistic with few trials).

Failed trials have no objective: they are counted per row, never modelled.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from search.analysis.scales import Scale, group_keys

CONFIDENCE = 0.95
BOOTSTRAPS = 300
MAX_EPOCH_LEVELS = 8
MAX_MODEL_TRIALS = 3000   # a larger study is modelled on a random sample of its trials
MAX_TIME_TRIALS = 1000    # the same for the time per epoch (a point estimate, no bootstrap)
MIN_TRIALS = 3            # a value needs this many modelled trials for a verdict
PERMUTATIONS = 199        # the factor test's shuffles (its smallest p-value is 1 / 200)
MAX_PERMUTED_TRIALS = 1000  # a larger study's factor test runs on a random sample of its trials
FACTOR_ALPHA = 0.05       # a factor "matters" below this p-value
SEED = 0
BOUNDED_METRICS = ("acc", "auc", "precision", "recall", "f1", "iou")
ABSENT = "(absent)"

MARGINAL_COLUMNS = ["modelled", "reached_epoch", "model_mean", "model_low", "model_high", "effect",
                    "effect_low", "effect_high", "row_verdict", "vs_best", "vs_best_low",
                    "vs_best_high", "worse_than_best"]


def metric_bounds(objective: str, values: np.ndarray) -> tuple[float, float]:
    """The range a mean of the objective can take: [0, 1] for an accuracy-like metric whose values
    lie in it, else the observed range."""
    values = values[np.isfinite(values)]
    if not len(values):
        return (-np.inf, np.inf)
    low, high = float(values.min()), float(values.max())
    if any(word in objective.lower() for word in BOUNDED_METRICS) and low >= 0 and high <= 1:
        return (0.0, 1.0)
    return (low, high)


def best_so_far(curve, maximize: bool) -> np.ndarray:
    values = np.asarray([v if v is not None else np.nan for v in curve], dtype=float)
    values = np.where(np.isfinite(values), values, -np.inf if maximize else np.inf)
    running = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    return np.where(np.isfinite(running), running, np.nan)


def _epoch_levels(stops: np.ndarray, final: int) -> np.ndarray:
    levels = np.unique(np.minimum(stops, final))
    if len(levels) > MAX_EPOCH_LEVELS:
        picked = np.quantile(np.minimum(stops, final), np.linspace(0, 1, MAX_EPOCH_LEVELS),
                             method="lower")
        levels = np.unique(np.append(picked, final))
    return levels.astype(int)


def _observations(trials: pd.DataFrame, curves: dict[int, np.ndarray], final: int,
                  levels: np.ndarray):
    """(trial position, epoch level, objective) for each trial at each epoch level it reached."""
    positions, epochs, values = [], [], []
    for position, number in enumerate(trials["number"].to_numpy()):
        curve = curves[int(number)]
        stop = min(len(curve), final)
        for level, epoch in enumerate(levels):
            if epoch <= stop and np.isfinite(curve[epoch - 1]):
                positions.append(position)
                epochs.append(level)
                values.append(curve[epoch - 1])
            elif epoch > stop and level == 0 and np.isfinite(curve[stop - 1]):
                positions.append(position)   # stopped before every level: its last value
                epochs.append(level)
                values.append(curve[stop - 1])
    return np.array(positions, dtype=int), np.array(epochs, dtype=int), np.array(values, dtype=float)


def _codes(values: pd.Series, scale: Scale) -> tuple[np.ndarray, list]:
    keys, order = group_keys(values, scale)
    rows = [k for k in order if (keys == k).any()] if len(order) else []
    index = {repr(k): i for i, k in enumerate(rows)}
    absent = len(rows)
    codes = np.array([index.get(repr(k), absent) if k is not None else absent for k in keys], dtype=int)
    if (codes == absent).any():
        rows = rows + [ABSENT]
    return codes, rows


def time_effects(search: pd.DataFrame, names: list[str], scales: dict[str, Scale]) -> dict[str, pd.Series]:
    """Per factor, the steady seconds per epoch of each value from the same additive model on
    the logarithm of every finished trial's steady epoch time (so a value's time is not the time
    of the other values it was tried with: resize, classes, batch size); NaN where too few."""
    timed = search[search["steady_sec_per_epoch"] > 0].copy()
    timed["value"] = np.log(timed["steady_sec_per_epoch"].astype(float))
    timed["state"] = "COMPLETE"
    curves = {int(n): [v] for n, v in zip(timed["number"], timed["value"])}
    rows = marginal_effects(timed, curves, names, scales, False, "log seconds",
                            max_trials=MAX_TIME_TRIALS, bootstraps=0)
    return {name: np.exp(frame["model_mean"].astype(float)) for name, frame in rows.items()}


def marginal_effects(search: pd.DataFrame, curves: dict[int, list], names: list[str],
                     scales: dict[str, Scale], maximize: bool, objective: str, *,
                     max_trials: int = MAX_MODEL_TRIALS,
                     bootstraps: int = BOOTSTRAPS) -> dict[str, pd.DataFrame]:
    """Per factor, a frame indexed by its row keys (as ``group_keys`` names them) with
    ``MARGINAL_COLUMNS``; empty frames when fewer than ``MIN_TRIALS`` trials can be modelled."""
    modelled = search[search["state"].isin(["COMPLETE", "PRUNED"]) & search["value"].notna()]
    modelled = modelled[[int(n) in curves for n in modelled["number"]]]
    if len(modelled) > max_trials:
        modelled = modelled.sample(max_trials, random_state=SEED)
    if len(modelled) < MIN_TRIALS or not names:
        return {name: pd.DataFrame(columns=MARGINAL_COLUMNS) for name in names}
    best = {int(n): best_so_far(curves[int(n)], maximize) for n in modelled["number"]}
    complete = modelled[modelled["state"] == "COMPLETE"]
    lengths = np.array([len(best[int(n)]) for n in modelled["number"]])
    final_lengths = [len(best[int(n)]) for n in complete["number"]] or list(lengths)
    final = int(pd.Series(final_lengths).mode().max())
    levels = _epoch_levels(lengths, final)
    position, epoch, y = _observations(modelled, best, final, levels)
    n_trials = len(modelled)

    # the design: one-hot epoch levels, then one block per factor
    offsets, width = {}, len(levels)
    for name in names:
        codes, rows = _codes(modelled["hp." + name], scales[name])
        offsets[name] = (width, rows, codes)
        width += len(rows)
    trial_x = np.zeros((n_trials, width))
    for name in names:
        start, rows, codes = offsets[name]
        trial_x[np.arange(n_trials), start + codes] = 1.0

    # per-trial sufficient statistics (a bootstrap resample's normal equations are their weighted
    # sums): a trial's observations share its factor codes and differ in their epoch level
    reached = np.zeros((n_trials, len(levels)))
    np.add.at(reached, (position, epoch), 1.0)
    at_epoch = np.zeros((n_trials, len(levels)))
    np.add.at(at_epoch, (position, epoch), y)
    count = reached.sum(axis=1)
    factors = trial_x[:, len(levels):]
    stacked = np.hstack([reached, factors])
    gram = np.einsum("ni,nj->nij", stacked, stacked)
    gram[:, :len(levels), :len(levels)] = reached[:, :, None] * np.eye(len(levels))
    gram[:, len(levels):, len(levels):] *= count[:, None, None]
    moment = np.hstack([at_epoch, factors * at_epoch.sum(axis=1, keepdims=True)])
    rng = np.random.default_rng(SEED)
    weights = np.vstack([np.ones(n_trials),
                         rng.multinomial(n_trials, np.full(n_trials, 1.0 / n_trials), bootstraps)])
    a = (weights @ gram.reshape(n_trials, -1)).reshape(-1, width, width)
    b = weights @ moment
    ridge = 1e-6 * max(float(np.trace(a[0])) / width, 1e-12)
    coef = np.linalg.solve(a + ridge * np.eye(width), b[..., None])[..., 0]   # (1 + B, width)
    # The same model on the completed trials alone: a pruned trial's early value need not tell
    # its final one (a high learning rate starts slowly), so a value is judged under both readings
    completed = (modelled["state"] == "COMPLETE").to_numpy(dtype=float)
    completed_only = None
    if 0 < completed.sum() < n_trials and completed.sum() >= MIN_TRIALS:
        kept = weights * completed
        a_kept = (kept @ gram.reshape(n_trials, -1)).reshape(-1, width, width)
        coef_kept = np.linalg.solve(a_kept + ridge * np.eye(width), (kept @ moment)[..., None])[..., 0]
        completed_only = (coef_kept, kept)

    # partial dependence: the trials' (resampled) mean design, one factor's block set to a value
    mean_x = (weights @ trial_x) / weights.sum(axis=1, keepdims=True)
    mean_x[:, :len(levels)] = 0.0
    final_level = list(levels).index(final)
    mean_x[:, final_level] = 1.0
    low_bound, high_bound = metric_bounds(objective, y)
    tail = (1 - CONFIDENCE) / 2
    result = {}
    with warnings.catch_warnings():  # a value missing from a resample: NaN there, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in names:
            result[name] = _factor_rows(offsets[name], mean_x, coef, weights, position, epoch, levels,
                                        final_level, (low_bound, high_bound), tail, maximize,
                                        completed_only)
    squares = np.zeros(n_trials)
    np.add.at(squares, position, y ** 2)
    tested = rng.permutation(n_trials)[:MAX_PERMUTED_TRIALS] if bootstraps else None
    for name in names:
        start, rows, _ = offsets[name]
        block = slice(start - len(levels), start - len(levels) + len(rows))
        result[name].attrs["factor_p"] = (
            _permutation_p(reached[tested], factors[tested], at_epoch[tested], count[tested],
                           squares[tested], block, rng, ridge)
            if tested is not None and len(rows) > 1 else None)
    return result


def _residual_squares(reached, factors, at_epoch, count, squares, ridge) -> float:
    """The additive model's residual sum of squares over these trials' observations."""
    a = np.block([[np.diag(reached.sum(axis=0)), reached.T @ factors],
                  [factors.T @ reached, factors.T @ (count[:, None] * factors)]])
    b = np.concatenate([at_epoch.sum(axis=0), factors.T @ at_epoch.sum(axis=1)])
    coef = np.linalg.solve(a + ridge * np.eye(len(b)), b)
    return float(squares.sum() - coef @ b)


def _permutation_p(reached, factors, at_epoch, count, squares, block: slice, rng,
                   ridge: float) -> float:
    """The permutation p-value of one factor (its one-hot ``block`` of ``factors``): the share
    of shuffles of its values among the trials whose model fits at least as well."""
    observed = _residual_squares(reached, factors, at_epoch, count, squares, ridge)
    shuffled = factors.copy()
    as_good = 0
    for _ in range(PERMUTATIONS):
        shuffled[:, block] = factors[rng.permutation(len(factors)), block]
        as_good += _residual_squares(reached, shuffled, at_epoch, count, squares, ridge) \
            <= observed * (1 + 1e-9)
    return (1 + as_good) / (1 + PERMUTATIONS)


def _partial_dependence(mean_x, coef, start: int, count: int) -> np.ndarray:
    """(1 + B, values): the model's mean with the factor's block set to each value in turn."""
    base = mean_x.copy()
    base[:, start:start + count] = 0.0
    return np.einsum("bw,bw->b", base, coef)[:, None] + coef[:, start:start + count]


def _factor_rows(offset, mean_x, coef, weights, position, epoch, levels, final_level, bounds,
                 tail: float, maximize: bool, completed_only=None) -> pd.DataFrame:
    """One factor's rows from the fitted (and resampled) coefficients; ``completed_only``: the
    coefficients fitted to the completed trials alone, and their weights (a second reading every
    interval also spans)."""
    low_bound, high_bound = bounds
    start, rows, codes = offset
    pd_values = _partial_dependence(mean_x, coef, start, len(rows))         # (1 + B, rows)
    present = (weights @ np.eye(len(rows))[codes]) > 0                    # value resampled at all
    # A value none of whose trials reached the final epoch is extrapolated there: its best so
    # far can only have grown (maximised) after the epoch its last trial stopped at, so its
    # intervals also span the model's mean at that epoch (the pessimistic bound).
    last_level = np.full(len(rows), final_level)
    for r in range(len(rows)):
        reached_levels = epoch[codes[position] == r]
        last_level[r] = reached_levels.max() if len(reached_levels) else final_level
    stopped = pd_values + coef[:, last_level] - coef[:, [final_level]]
    scenarios = [np.clip(np.where(present, v, np.nan), low_bound, high_bound)
                 for v in (pd_values, stopped)]
    pd_values = scenarios[0]
    references = [pd_values, pd_values]  # what each reading's value is compared with: the model's
    if completed_only is not None:
        coef_kept, kept = completed_only
        reached = (kept @ np.eye(len(rows))[codes]) > 0                   # a completed trial has it
        scenarios.append(np.clip(np.where(reached, _partial_dependence(mean_x, coef_kept, start, len(rows)),
                                          np.nan), low_bound, high_bound))
        references.append(scenarios[-1])  # the completed trials' reading against its own best
    real = [i for i, r in enumerate(rows) if r != ABSENT]
    frame = pd.DataFrame(index=pd.Index(rows, dtype=object))
    frame["modelled"] = np.bincount(codes, minlength=len(rows))
    frame["reached_epoch"] = levels[last_level]
    _interval_columns(frame, "model", scenarios, tail)
    effects = [v - np.nanmean(v[:, real], axis=1, keepdims=True) for v in scenarios]
    _interval_columns(frame, "effect", effects, tail)
    # verdicts allow for the number of values compared (Bonferroni): a factor without an
    # effect is "no effect detected" at 95% as a whole, not only value by value
    family = tail / max(len(real), 1)
    verdict_frame = pd.DataFrame(index=frame.index)
    _interval_columns(verdict_frame, "effect", effects, family)
    verdict_frame["modelled"] = frame["modelled"]
    frame["row_verdict"] = [_row_verdict(r, maximize, len(real)) for r in verdict_frame.itertuples()]
    judged = [i for i in real if frame["row_verdict"].iloc[i] != "too few trials"]
    if judged:
        best = max(judged, key=lambda i: pd_values[0, i] if maximize else -pd_values[0, i])
        against = [v - reference[:, [best]] for v, reference in zip(scenarios, references)]
        _interval_columns(frame, "vs_best", against, tail)
        _interval_columns(verdict_frame, "vs_best", against, family)
        frame["worse_than_best"] = (verdict_frame["vs_best_high"] < 0 if maximize
                                    else verdict_frame["vs_best_low"] > 0)
    else:
        frame["vs_best"] = frame["vs_best_low"] = frame["vs_best_high"] = np.nan
        frame["worse_than_best"] = False
    return frame


def _interval_columns(frame: pd.DataFrame, name: str, scenarios: list[np.ndarray], tail: float):
    """``name`` (the first scenario's full-sample estimate) and ``name_low``/``name_high``: the
    bootstrap percentiles, widened to cover every scenario."""
    frame["model_mean" if name == "model" else name] = scenarios[0][0]
    frame[f"{name}_low"] = np.nanmin([np.nanquantile(v[1:], tail, axis=0) for v in scenarios], axis=0)
    frame[f"{name}_high"] = np.nanmax([np.nanquantile(v[1:], 1 - tail, axis=0) for v in scenarios], axis=0)


def _row_verdict(row, maximize: bool, values: int) -> str:
    if row.modelled < MIN_TRIALS or values < 2 or not np.isfinite(row.effect_low):
        return "too few trials"
    if row.effect_low > 0:
        return "helps" if maximize else "hurts"
    if row.effect_high < 0:
        return "hurts" if maximize else "helps"
    return "no effect detected"
