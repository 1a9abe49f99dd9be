"""Every shipped space (spaces/) says what it tunes and how to run it (each one run for real:
tests/e2e/test_spaces.py)."""

import ast
from pathlib import Path

import pytest

from search.testing.cli import REPO

pytestmark = pytest.mark.slow

SPACES = sorted((REPO / "spaces").glob("*.py"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_each_space_starts_with_what_it_tunes_and_its_command(path: Path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and ("Tunes" in doc or "tunes" in doc)
    assert f"search start spaces/{path.name}" in doc
