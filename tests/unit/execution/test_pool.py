"""The pool's worker processes: each is told which space source to accept, and gets the store's
URL through its environment, never on its command line (visible to every user of the machine)."""


def test_local_workers_are_told_which_source_to_accept():
    from search.execution.pool import worker_command

    command = worker_command("cnn", 0, "ab" * 32)
    assert command[command.index("--space-sha256") + 1] == "ab" * 32
    assert not any("postgresql" in part or "sqlite" in part for part in command)  # URL via env only
