"""The edges are quiet about the libraries' start-up: native lines written to stderr while
TensorFlow loads are filtered, other lines kept; ``SEARCH_VERBOSE`` shows everything. A stand-in
``tensorflow`` module writes to file descriptor 2 the way TensorFlow's native code does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search.testing.cli import REPO

FAKE_TENSORFLOW = """import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n")
os.write(2, b"a line of the library's own\\n")
"""

SCRIPT = """import importlib.util, sys
from search.logs import configure_logging
configure_logging()
importlib.util.find_spec("tensorflow")   # as the backend check does: must not spend the filter
import tensorflow
print("imported", file=sys.stderr)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_native_start_up_lines_are_filtered_unless_verbose(tmp_path, verbose):
    (tmp_path / "tensorflow.py").write_text(FAKE_TENSORFLOW)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    if verbose:
        env["SEARCH_VERBOSE"] = "1"
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "a line of the library's own" in lines and lines[-1] == "imported"
    noisy = [line for line in lines if "absl" in line or "cudart" in line]
    assert len(noisy) == (2 if verbose else 0), lines
