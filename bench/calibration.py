"""Calibration of ``search analyze``'s search-trial effects on synthetic studies with known effects.

Each study (``search.testing.synthetic.calibration_trials``): 60 random trials of four factors with
known additive effects (optimizer and learning-rate decade matter, batch size is a true null, a
flip that moves accuracy by +-0.01), seed noise sd 0.02, a pruner that stops half the trials below
the median after their first epoch. The analysis is the one ``search analyze`` runs (the model-based
marginal effect of every value, bootstrap 95% intervals, verdicts). Printed:

- coverage: the share of values whose 95% effect interval holds the true effect (target 90-97%);
- sign: among true effects of at least 2 noise sd, the share whose estimate has the right sign and
  the share the verdict calls (helps/hurts) with the right sign (target >= 95%);
- nulls: the share of studies whose true-null factor (batch size) reads "no effect detected"
  (target >= 90%);
- named: the share of studies whose factors with large effects (optimizer, learning rate) are
  named as mattering (a value worse than the best, or the factor's permutation test).

    python bench/calibration.py --studies 300
"""

from __future__ import annotations

import argparse
import json
import time

try:
    from bench import common  # puts the repository on the path
except ImportError:  # run as a script: bench/ is the script's folder
    import common

NULL_FACTOR = "batch_size"
REAL_FACTORS = ("optimizer", "lr_decade")  # the factors with large known effects
OBJECTIVE = "val_accuracy"


def analyze_study(trials) -> dict:
    """``search analyze``'s effects (``ParamEffect`` per factor) of one synthetic study."""
    from search.analysis.effects import param_effect
    from search.analysis.frame import frame_from_trials
    from search.analysis.marginal import marginal_effects, metric_bounds
    from search.analysis.scales import scales
    from search.analysis.study_analysis import objective_curves

    frame = frame_from_trials(trials, OBJECTIVE)
    names = [c[3:] for c in frame.columns if c.startswith("hp.")]
    scale = scales(frame, names, trials)
    marginal = marginal_effects(frame, objective_curves(trials, OBJECTIVE), names, scale, True, OBJECTIVE)
    bounds = metric_bounds(OBJECTIVE, frame["value"].to_numpy(dtype=float))
    return {n: param_effect(frame, n, scale[n], True, marginal[n], bounds) for n in names}


def calibrate(studies: int, n_trials: int = 60, noise: float = 0.02, first_seed: int = 0) -> dict:
    """The calibration figures over ``studies`` synthetic studies."""
    from search.testing.synthetic import calibration_trials, true_effects

    truth = true_effects()
    covered = rows = big = big_sign = big_called = nulls = null_clear = pruned = trials = 0
    named = {name: 0 for name in REAL_FACTORS}
    for seed in range(first_seed, first_seed + studies):
        study = calibration_trials(seed, n_trials=n_trials, noise=noise)
        trials += len(study)
        pruned += sum(t.state.name == "PRUNED" for t in study)
        for name, effect in analyze_study(study).items():
            for r in effect.rows.itertuples():
                true = truth[name][r.value]
                if r.row_verdict == "too few trials":
                    continue
                rows += 1
                covered += bool(r.effect_low <= true <= r.effect_high)
                if abs(true) >= 2 * noise:
                    big += 1
                    big_sign += (r.effect > 0) == (true > 0)
                    big_called += r.row_verdict == ("helps" if true > 0 else "hurts")
            if name == NULL_FACTOR:
                nulls += 1
                null_clear += effect.verdict.startswith(f"{name}: no effect detected")
            if name in named:
                named[name] += not effect.verdict.startswith(f"{name}: no effect detected") \
                    and not effect.verdict.startswith(f"{name}: too few")
    return {"studies": studies, "trials_per_study": n_trials, "noise_sd": noise,
            "pruned_share": pruned / trials, "values": rows, "coverage": covered / rows,
            "effects_2sd": big, "sign_right": big_sign / big if big else None,
            "called_right": big_called / big if big else None,
            "null_studies": nulls, "null_no_effect": null_clear / nulls if nulls else None,
            "named": {name: count / studies for name, count in named.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--out", default=str(common.RESULTS / "calibration.json"),
                        help="where the figures go as JSON (default bench/results/calibration.json)")
    args = parser.parse_args()
    started = time.perf_counter()
    result = calibrate(args.studies, args.trials, args.noise)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{result['studies']} synthetic studies of {result['trials_per_study']} trials "
          f"(noise sd {result['noise_sd']}, {result['pruned_share']:.0%} pruned), "
          f"{result['seconds']} s")
    print(f"coverage of the true effect by the 95% intervals: {result['coverage']:.1%} "
          f"of {result['values']} values (target 90-97%)")
    print(f"effects of 2 sd or more ({result['effects_2sd']}): sign of the estimate right "
          f"{result['sign_right']:.1%}, called helps/hurts with the right sign "
          f"{result['called_right']:.1%} (target >= 95%)")
    print(f"true null factor read 'no effect detected': {result['null_no_effect']:.1%} of "
          f"{result['null_studies']} studies (target >= 90%)")
    print("factors with large known effects named as mattering (not 'no effect detected'): "
          + ", ".join(f"{name} {share:.1%}" for name, share in result["named"].items()))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
