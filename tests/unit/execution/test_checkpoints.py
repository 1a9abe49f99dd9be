"""The artifact store of a study's checkpoints: where it is (stored with the study, resolved from
the working directory), what may change on a resume, which schemes are known (the checkpoints of
real trials: tests/e2e/test_best.py)."""

import json
import sqlite3

import pytest

from search.commands.start import prepare
from search.errors import SearchError
from search.execution import checkpoints as artifacts
from search.options import normalize_location, start_options
from search.testing.studies import new_subset_study


def test_artifact_store_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = new_subset_study(tmp_path, 1, artifacts="shared/ckpt", keep_best=1)
    stored = json.loads(sqlite3.connect(tmp_path / "store.db").execute(
        "select config_json from search_studies").fetchone()[0])
    assert stored["artifacts"] == str(tmp_path / "shared" / "ckpt") and stored["keep_best"] == 1
    with pytest.raises(SearchError, match="was created with --artifacts"):
        prepare(start_options(str(tmp_path / "space.py"), storage=url, artifacts="other"))
    with pytest.raises(SearchError, match="keep_best must be 0 or more"):
        prepare(start_options(str(tmp_path / "space.py"), storage=url, keep_best=-1))
    with pytest.raises(SearchError, match="unsupported scheme"):
        normalize_location("ftp://host/x")
    assert artifacts.default_location("postgresql://u@h/db") is None  # no local folder by default
    s3 = artifacts.open_store("s3://bucket/runs/cnn")
    assert s3.prefix == "runs/cnn" and s3._key("id") == "runs/cnn/id" and s3.store.bucket == "bucket"
