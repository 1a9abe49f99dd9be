"""The search-trial report of a real study against a plain-Keras ground truth (issue 15).

`search analyze` gives, per value of a factor, the model's mean objective with a 95% interval: the
partial dependence (the objective with the factor at that value, averaged over the configurations
the study's search trials ran). Its ground truth is trained here with plain Keras Tuner + Keras
(``search.testing.ground_truth``: the space's own build and fit, none of the service's code): for
each value, ``--samples`` of the study's own search trials (completed and pruned, drawn at random)
are trained to the study's epochs with their condition and other values and this factor at the
value (a learning-rate bin: a log-uniform draw inside it), each on a fresh seed, scored by the best
epoch's objective. Printed per value: the report's mean and interval, the ground truth's mean and
standard error, and whether the interval holds it; for each value the report calls worse than its
best, the plain-Keras difference on the same configurations and seeds (paired) and whether it is
worse there too, beyond two standard errors; then whether the report names the factor and its
best value is the ground truth's best (or within two standard errors of it).

    search start spaces/cnn.py --trials 40 --epochs 5 --sweep resize=8,16,32 --set ...   # the study
    python bench/search_truth.py --storage sqlite:///search.db --study cnn \\
        --params learning_rate,optimizer --model-params classes,learning_rate,optimizer,batch_size \\
        --samples 12 --out bench/results/search_truth.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

try:
    from bench import common  # puts the repository on the path
except ImportError:  # run as a script: bench/ is the script's folder
    import common

FIRST_SEED = 100_000  # ground-truth seeds: not a trial's (trial numbers)


def _bin_edges(label: str) -> tuple[float, float] | None:
    low, sep, high = str(label).partition("..")
    try:
        return (float(low), float(high)) if sep else None
    except ValueError:
        return None


def _paired(scores: list[float], best: list[float]) -> tuple[float, float]:
    """The mean and standard error of the paired differences (same configurations, same seeds)."""
    diffs = [a - b for a, b in zip(scores, best)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return statistics.mean(diffs), se


def ground_truth(storage: str, study_name: str, params: list[str], samples: int, seed: int = 0,
                 model_params: list[str] | None = None, reuse: dict | None = None) -> dict:
    import numpy as np
    import optuna

    import search
    from search import _datasets
    from search.study import open_study
    from search.testing.ground_truth import load_space_module, plain_keras_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    analysis = search.analyze(study_name, storage=storage, params=model_params).to_dict()
    analysis["parameters"] = [p for p in analysis["parameters"] if p["name"] in params]
    reused = {(r["param"], str(r["value"])): r["scores"] for r in (reuse or {}).get("rows", [])
              if (reuse or {}).get("samples") == samples}
    stored = open_study(storage, study_name, read_only=True)
    config, source_path, source = stored.config, stored.record.space_path, stored.record.space_source
    stored.storage.engine.dispose()
    with tempfile.TemporaryDirectory() as folder:  # the stored source: the code the trials ran
        space_file = Path(folder) / f"{study_name}_space.py"
        space_file.write_text(source)
        space = load_space_module(space_file, f"search_truth_{study_name}")
    dataset = _datasets.load(config.data, config.seed)
    trials = [t for t in optuna.load_study(study_name=study_name, storage=storage).trials
              if t.state.name in ("COMPLETE", "PRUNED") and "ablation" not in t.user_attrs]
    rng = np.random.default_rng(seed)
    picked = [trials[i] for i in rng.choice(len(trials), size=min(samples, len(trials)), replace=False)]
    rows, done, started = [], 0, time.perf_counter()
    total = sum(len(p["rows"]) for p in analysis["parameters"]) * len(picked)
    for factor in analysis["parameters"]:
        name = factor["name"]
        for row in factor["rows"]:
            scores = list(reused.get((name, str(row["value"])), []))
            edges = _bin_edges(row["value"])
            for k, trial in enumerate(picked[len(scores):], start=len(scores)):
                values = {**trial.user_attrs["hp_values"], **config.fixed}
                values[name] = (float(10 ** rng.uniform(math.log10(edges[0]), math.log10(edges[1])))
                                if edges else row["value"])
                scores.append(plain_keras_score(space, dataset, values, FIRST_SEED + k, config.epochs,
                                                config.objective))
                done += 1
                print(f"\r  {done}/{total} trainings, {time.perf_counter() - started:.0f} s", end="", flush=True)
            mean = statistics.mean(scores)
            se = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else float("nan")
            low, high = row["model_low"], row["model_high"]
            rows.append({"param": name, "value": row["value"], "model_mean": row["model_mean"],
                         "model_low": low, "model_high": high, "truth_mean": mean, "truth_se": se,
                         "inside": low is not None and high is not None and low <= mean <= high,
                         "worse_than_best": row["worse_than_best"], "scores": scores})
    print()
    factors = []
    for factor in analysis["parameters"]:
        mine = [r for r in rows if r["param"] == factor["name"]]
        modelled = [r for r in mine if r["model_mean"] is not None]
        best = max(modelled, key=lambda r: r["model_mean"]) if modelled else None
        truth_best = max(mine, key=lambda r: r["truth_mean"])
        for r in mine:  # a value called worse, against the report's best on the same runs
            r["vs_report_best"], r["vs_report_best_se"] = _paired(r["scores"], best["scores"]) if best else (None, None)
            r["claim_supported"] = (None if not r["worse_than_best"] else
                                    r["vs_report_best"] + 2 * r["vs_report_best_se"] < 0)
        factors.append({
            "param": factor["name"], "factor_p": factor["factor_p"], "verdict": factor["verdict"],
            "named": factor["factor_p"] is not None and factor["factor_p"] < 0.05,
            "report_best": best["value"] if best else None, "truth_best": truth_best["value"],
            "best_agrees": best is not None and (best["value"] == truth_best["value"] or
                                                 truth_best["truth_mean"] - best["truth_mean"]
                                                 <= 2 * math.hypot(best["truth_se"], truth_best["truth_se"])),
            "worse_claims": sum(bool(r["worse_than_best"]) for r in mine),
            "worse_supported": sum(bool(r["claim_supported"]) for r in mine),
        })
    return {"study": study_name, "space": source_path, "epochs": config.epochs, "samples": len(picked),
            "rows": rows, "factors": factors, "seconds": round(time.perf_counter() - started, 1),
            "machine": common.machine()}


def print_result(result: dict) -> None:
    print(f"study {result['study']} ({result['space']}, {result['epochs']} epochs): the report's "
          f"model means against plain Keras, {result['samples']} of its configurations a value")
    print(f"{'param':14s} {'value':12s} {'report mean [95%]':>24s} {'plain Keras (se)':>18s}  inside  "
          f"report says  plain Keras vs the report's best (paired, se)")
    for r in result["rows"]:
        interval = ("-" if r["model_mean"] is None else
                    f"{r['model_mean']:.3f} [{r['model_low']:.3f}, {r['model_high']:.3f}]")
        claim = "worse" if r["worse_than_best"] else ""
        paired = ("" if r["vs_report_best"] is None or r["vs_report_best"] == 0 else
                  f"{r['vs_report_best']:+.3f} ({r['vs_report_best_se']:.3f})"
                  + ("" if r["claim_supported"] is None else
                     "  supported" if r["claim_supported"] else "  NOT supported"))
        print(f"{r['param']:14s} {str(r['value']):12s} {interval:>24s} "
              f"{r['truth_mean']:>10.3f} ({r['truth_se']:.3f})  {'yes' if r['inside'] else 'NO':6s}  "
              f"{claim:11s}  {paired}")
    inside = sum(r["inside"] for r in result["rows"])
    print(f"intervals holding the ground truth's mean: {inside} of {len(result['rows'])}")
    for f in result["factors"]:
        print(f"{f['param']}: named {'yes' if f['named'] else 'no'} (permutation p={f['factor_p']}); "
              f"report's best {f['report_best']}, plain Keras' best {f['truth_best']} "
              f"({'agrees' if f['best_agrees'] else 'DISAGREES'} within 2 se); values called worse than "
              f"the best: {f['worse_claims']}, worse in plain Keras too (paired, beyond 2 se): "
              f"{f['worse_supported']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--params", default="learning_rate,optimizer", help="the factors checked")
    parser.add_argument("--model-params", help="the factors `search analyze --params` models "
                        "(default: every searched one)")
    parser.add_argument("--reuse", help="a JSON this script wrote for the same study and --samples: "
                        "its plain-Keras scores are reused, not trained again")
    parser.add_argument("--samples", type=int, default=12, help="configurations trained per value")
    parser.add_argument("--out", help="the JSON's path (default bench/results/search_truth.json)")
    args = parser.parse_args()
    reuse = json.loads(Path(args.reuse).read_text()) if args.reuse else None
    result = ground_truth(args.storage, args.study, args.params.split(","), args.samples,
                          model_params=args.model_params.split(",") if args.model_params else None,
                          reuse=reuse)
    print_result(result)
    print(f"written: {common.write_results('search_truth', result, args.out)}")


if __name__ == "__main__":
    main()
