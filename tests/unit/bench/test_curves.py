"""The learning-curve table (bench/curves.py): the grids of the recorded spaces, the append-only
file and its repair after an interrupted write."""

import keras_tuner as kt

from bench import curves


def test_the_mlp_grid_declares_a_layer_width_only_for_the_layers_that_exist():
    configs = curves.MLP.configs()
    for config in configs:
        assert {f"units_{i}" for i in range(config["layers"])} == {k for k in config if k.startswith("units_")}
    widths = len(curves.MLP.params[2].values)
    per_depth = sum(widths ** depth for depth in (1, 2, 3))
    others = 1
    for p in curves.MLP.params:
        if p.name not in ("layers", "units_0", "units_1", "units_2"):
            others *= len(p.values)
    assert len(configs) == per_depth * others
    assert len({curves.config_key(c) for c in configs}) == len(configs)
    assert curves.MLP.default() in configs and curves.CNN.default() in curves.CNN.configs()


def test_a_grid_declared_on_keras_tuner_hyperparameters_is_its_configurations():
    for grid in curves.GRIDS.values():
        for config in grid.configs()[::37]:
            hp = kt.HyperParameters()
            hp.values.update(config)
            assert grid.declare(hp) == config
            assert {k: v for k, v in hp.values.items()} == config
        hp = kt.HyperParameters()
        assert grid.declare(hp) == grid.default()


def test_the_table_keeps_every_complete_record_and_cuts_a_partial_one(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    first = {"kind": "curve", "space": "mlp", "seed": 1, "config": {"b": 2, "a": 1},
             "epochs": {"val_accuracy": [0.5, 0.75]}}
    curves.append_record(path, first)
    curves.append_record(path, {**first, "seed": 0})
    whole = path.stat().st_size
    with open(path, "ab") as f:  # a run killed while writing its third record
        f.write(open(path, "rb").read()[:20])
    records, good = curves.read_records(path)
    assert records == [first, {**first, "seed": 0}] and good == whole
    assert curves.repair(path) == 2 and path.stat().st_size == whole
    table = curves.Table.load(path)
    assert table.get("mlp", 1, {"a": 1, "b": 2}) == first  # the names' order does not matter
    assert table.get("mlp", 2, {"a": 1, "b": 2}) is None
    assert table.seeds("mlp") == [0, 1]
