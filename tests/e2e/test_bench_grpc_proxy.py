"""bench/grpc_proxy.py's probes on the session's PostgreSQL server: Optuna's gRPC storage proxy in
front of open_storage carries Optuna's trial calls, but not Optuna's heartbeat nor our own tables
(what bench/README.md's "6. Store scale" reports). Skipped where grpcio is not installed."""

import pytest

pytest.importorskip("grpc")

from bench import grpc_proxy


def test_the_proxy_carries_trials_but_no_heartbeat_and_none_of_our_tables(postgres_server):
    probes = grpc_proxy.run_probes(postgres_server)

    def probe(prefix):
        return next(v for k, v in probes.items() if k.startswith(prefix))

    # (1) Optuna's own calls go through, to our ResilientRDBStorage behind the server
    assert probe("1.")["ok"], probe("1.")
    assert probe("1.")["result"]["state"] == "COMPLETE"
    assert probe("1.")["result"]["params"] == ["lr", "optimizer", "units"]
    # (2) no heartbeat: a stale trial stays RUNNING through the proxy, FAIL when reaped direct
    assert probe("2a.")["result"] is False
    assert probe("2b.")["result"] is False
    assert probe("2c.")["error"] == \
        "AttributeError: 'GrpcStorageProxy' object has no attribute 'record_heartbeat'"
    assert list(probe("2f.")["result"].values()) == ["RUNNING", "FAIL"]
    # (3) our grouped write falls back to one call a key; our tables need an engine it has not
    assert probe("3a.")["result"]["stored"] == {"a": 1, "b": 2, "c": 3}
    assert probe("3a.")["result"]["grouped (one transaction)"] is False
    assert probe("3d.")["error"] == "AttributeError: 'GrpcStorageProxy' object has no attribute 'engine'"
    assert probe("3e.")["result"]["search.storage.is_transient"] is False
