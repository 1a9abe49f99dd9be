"""The layers of DESIGN.md hold: import-linter's contracts (pyproject.toml, [tool.importlinter])
are all kept, and they do catch a break (one upward import, in a copy of the project)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from search.testing.cli import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter's own TOML reader
    import tomli as tomllib

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
LAYERS = next(c["name"] for c in CONTRACTS if c["type"] == "layers")


def lint_imports(cwd: Path, **env) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts of ``cwd/pyproject.toml`` (no cache, lines unwrapped)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False,
                          env=dict(os.environ, COLUMNS="1000", **env))


def test_every_contract_is_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout, result.stdout
    for contract in CONTRACTS:
        assert f"{contract['name']} KEPT" in result.stdout, contract["name"]


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("search", "spaces"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    retry = tmp_path / "search" / "storage" / "retry.py"  # the bottom layer imports the top one
    retry.write_text(retry.read_text() + "\nfrom search import cli  # upward: storage is the bottom layer\n")
    result = lint_imports(tmp_path, PYTHONPATH=str(tmp_path))
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{LAYERS} BROKEN" in result.stdout, result.stdout
    assert "search.storage.retry -> search.cli" in result.stdout, result.stdout
    assert f"Contracts: {len(CONTRACTS) - 1} kept, 1 broken." in result.stdout, result.stdout
