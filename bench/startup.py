"""The first answers: how long each quick command takes, from a fresh process, as a user types it.

Each command runs ``--runs`` times (default 5) as ``python -m search ...`` in a fresh process; the
table gives the median wall time against its bound (issue "The first five minutes": help, version,
every usage error, ``status`` and the no-such-study errors under 1 s; ``analyze`` of a 100-trial
study under 3 s), and which heavy libraries each command imported (none of TensorFlow, Keras,
plotly or scipy may load before a usage error is answered). The 100-trial study is synthetic
(``search.testing.synthetic``), registered as ``search start`` registers one.

    python bench/startup.py [--runs 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, child_env, loadavg, machine, print_table, run_search, say, write_results

HEAVY = ("tensorflow", "keras", "plotly", "scipy")


def commands(work: Path, url: str) -> list[tuple[str, list[str], float]]:
    """(what, arguments, bound in seconds)."""
    space = str(REPO / "spaces" / "cnn.py")
    return [
        ("search --help", ["--help"], 1.0),
        ("search --version", ["--version"], 1.0),
        ("start: no such file", ["start", str(work / "cnnn.py")], 1.0),
        ("start: not Python", ["start", str(REPO / "README.md")], 1.0),
        ("start --trials 0", ["start", space, "--trials", "0"], 1.0),
        ("start --pruner nope", ["start", space, "--pruner", "nope"], 1.0),
        ("status (a store of 1 study)", ["status", "--storage", url], 1.0),
        ("status --study (100 trials)", ["status", "--study", "hundred", "--storage", url], 1.0),
        ("status --study: no such study", ["status", "--study", "cnnn", "--storage", url], 1.0),
        ("analyze --study: no such study", ["analyze", "--study", "cnnn", "--storage", url], 1.0),
        ("analyze (100 trials, text + HTML)",
         ["analyze", "--study", "hundred", "--storage", url, "--html", str(work / "r.html")], 3.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--out", default=None, help="JSON results (default bench/results/startup.json)")
    args = parser.parse_args()
    from search.testing.synthetic import build_search_study

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'search.db'}"
        build_search_study(100, storage=url, study_name="hundred")
        env = child_env({"COLUMNS": "120"})
        rows, results = [], []
        for what, argv, bound in commands(work, url):
            walls, codes = [], set()
            for _ in range(args.runs):
                code, wall, _ = run_search(argv, env, timeout=300)
                walls.append(wall)
                codes.add(code)
            loaded = _heavy_modules(argv, env)
            median = statistics.median(walls)
            ok = median <= bound
            results.append({"command": what, "args": argv, "median_s": median, "walls_s": walls,
                            "bound_s": bound, "within": ok, "exit": sorted(codes), "loaded": loaded})
            rows.append([what, f"{median:.2f}", f"{min(walls):.2f}", f"{bound:g}",
                         "yes" if ok else "NO", ", ".join(loaded) or "-", ",".join(map(str, sorted(codes)))])
            say(f"{what}: median {median:.2f} s")
    print_table(f"Startup: median of {args.runs} fresh processes (wall s)",
                ["command", "median", "min", "bound", "within", "heavy imports", "exit"], rows,
                note=f"load average before: {loadavg()}")
    path = write_results("startup", {"machine": machine(), "runs": args.runs, "results": results}, args.out)
    say(f"results: {path}")
    if not all(r["within"] for r in results):
        sys.exit(1)


def _heavy_modules(argv: list[str], env: dict) -> list[str]:
    """The heavy libraries the command leaves in ``sys.modules`` (run once more, in-process)."""
    import subprocess

    probe = ("import sys, runpy\nsys.argv = ['search'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('search', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.__stderr__)\n")
    proc = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    for line in proc.stderr.splitlines():
        if line.startswith("HEAVY "):
            return ast.literal_eval(line[len("HEAVY "):])
    return ["?"]


if __name__ == "__main__":
    main()
