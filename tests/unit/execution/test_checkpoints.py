"""The artifact store of a study's checkpoints: where it is (stored with the study, resolved from
the working directory), what may change on a resume, which schemes are known (the checkpoints of
real trials: tests/e2e/test_best.py)."""

import io
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
    uuid = "0b9e8a51-3c0d-4a5e-9f7e-2d7c1a6b8e40"
    assert s3.prefix == "runs/cnn" and s3._key(uuid) == f"runs/cnn/{uuid}" and s3.store.bucket == "bucket"


@pytest.mark.parametrize("artifact_id", ["precious.txt", "../victim/precious.txt", "/etc/passwd",
                                         "0B9E8A51-3C0D-4A5E-9F7E-2D7C1A6B8E40/..", ""])
def test_an_artifact_id_is_never_a_path(tmp_path, artifact_id):
    """Whatever the store names, the artifact store reads, writes and removes only ids as Optuna
    makes them (UUIDs), inside its own folder or prefix."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    folder = artifacts.open_store(str(tmp_path / "store"))
    for use in (folder.remove, folder.open_reader, lambda i: folder.write(i, io.BytesIO(b"x")),
                artifacts.open_store("s3://bucket/prefix")._key):
        with pytest.raises(artifacts.NotAnArtifactId):
            use(artifact_id)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not artifacts.is_artifact_id(artifact_id)


def test_an_artifact_id_that_is_a_link_out_of_the_folder_is_refused(tmp_path):
    uuid = "0b9e8a51-3c0d-4a5e-9f7e-2d7c1a6b8e40"
    (tmp_path / "store").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "file").write_text("keep me")
    (tmp_path / "store" / uuid).symlink_to(tmp_path / "elsewhere" / "file")
    with pytest.raises(artifacts.NotAnArtifactId):
        artifacts.open_store(str(tmp_path / "store")).open_reader(uuid)
