"""The benchmarks' timing probe, loaded by Python at start-up (``sitecustomize``).

The bench scripts put this folder on ``PYTHONPATH`` of the ``search`` processes they start and set
``BENCH_PROBE_DIR``; every such process (``search start`` and the workers it spawns, which inherit
the environment) then times the worker loop's calls and writes them to
``$BENCH_PROBE_DIR/probe-<pid>.json`` at exit. Without ``BENCH_PROBE_DIR`` this file does nothing.
Nothing in ``search/`` is changed: see ``_bench_probe.py`` for what is wrapped.
"""

import os
import sys

if os.environ.get("BENCH_PROBE_DIR"):
    try:
        import _bench_probe

        _bench_probe.install()
    except Exception as exc:  # the run goes on unprobed; the bench script reports missing dumps
        sys.stderr.write(f"bench probe not installed: {type(exc).__name__}: {exc}\n")
