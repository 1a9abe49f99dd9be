"""search.execution.trust: the first unpinned run of a stored source here is said once per store,
study and source; what was seen is kept in the user's config folder, and a file that cannot be
read or written changes nothing but that the line comes again."""

import json
import os

import pytest

from search.execution.trust import first_use_note, store_identity, trusted_path

SOURCE = "def build(hp):\n    return None\n"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def test_said_the_first_time_only(tmp_path, config_home):
    from search.space.source import source_sha256

    url = f"sqlite:///{tmp_path / 'store.db'}"
    note = first_use_note(url, "cnn", SOURCE)
    assert note == (f"running the space source stored in {url} for study 'cnn' (sha256 "
                    f"{source_sha256(SOURCE)[:12]}) on this machine for the first time: whoever can "
                    "write to that store chooses this code; pin it with --space FILE")
    assert trusted_path() == config_home / "search" / "trusted.json"
    assert first_use_note(url, "cnn", SOURCE) is None
    # another study, another source, another store: each said once
    assert first_use_note(url, "mlp", SOURCE) is not None
    assert first_use_note(url, "cnn", SOURCE + "# changed\n") is not None
    assert first_use_note(f"sqlite:///{tmp_path / 'other.db'}", "cnn", SOURCE) is not None
    assert first_use_note(url, "cnn", SOURCE + "# changed\n") is None
    assert len(json.loads(trusted_path().read_text())["seen"]) == 4


def test_no_password_is_kept_or_shown_and_a_relative_sqlite_path_is_the_same_file(tmp_path, monkeypatch):
    note = first_use_note("postgresql://search:s3cret@db.example:5432/studies", "cnn", SOURCE)
    assert "s3cret" not in note and "postgresql://search:***@db.example:5432/studies" in note
    assert "s3cret" not in trusted_path().read_text()
    monkeypatch.chdir(tmp_path)
    assert store_identity("sqlite:///store.db") == f"sqlite:///{tmp_path / 'store.db'}"
    first_use_note("sqlite:///store.db", "cnn", SOURCE)
    assert first_use_note(f"sqlite:///{tmp_path / 'store.db'}", "cnn", SOURCE) is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"seen": 3}', '{"seen": [1, "x"]}', ""])
def test_a_corrupt_file_counts_as_empty_and_is_made_whole(tmp_path, content):
    trusted_path().parent.mkdir(parents=True)
    trusted_path().write_text(content)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert first_use_note(url, "cnn", SOURCE) is not None
    assert first_use_note(url, "cnn", SOURCE) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any mode")
def test_an_unwritable_config_folder_keeps_nothing_and_raises_nothing(tmp_path, config_home):
    config_home.mkdir()
    config_home.chmod(0o500)
    try:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        assert first_use_note(url, "cnn", SOURCE) is not None
        assert first_use_note(url, "cnn", SOURCE) is not None  # nothing kept: said again
        assert not (config_home / "search").exists()
    finally:
        config_home.chmod(0o700)


def test_a_config_folder_that_is_a_file_raises_nothing(tmp_path, config_home):
    config_home.write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert first_use_note(url, "cnn", SOURCE) is not None
    assert first_use_note(url, "cnn", SOURCE) is not None


def test_a_trusted_file_that_cannot_be_read_or_replaced_raises_nothing(tmp_path):
    trusted_path().mkdir(parents=True)  # a folder where the file belongs (works as root too)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert first_use_note(url, "cnn", SOURCE) is not None
    assert first_use_note(url, "cnn", SOURCE) is not None
    assert [p.name for p in trusted_path().parent.iterdir()] == ["trusted.json"]  # no temporary file left
