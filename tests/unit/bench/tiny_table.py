"""A tiny hand-written learning-curve table for the replay's tests: a three-parameter grid (one
parameter conditional), a made-up curve per configuration, one of them diverging."""

from bench import curves

E = 9
TINY = curves.Grid("tiny", curves.BENCH / "spaces" / "replay.py", (
    curves.Param("units", (8, 16, 32), 16),
    curves.Param("deep", (False, True), False),
    curves.Param("width", (4, 8), 4, when=("deep", (True,))),
))
DIVERGES = {"units": 32, "deep": False}  # its loss became NaN at its third epoch


def curve_of(index: int, config: dict) -> dict:
    """A distinct, made-up curve per configuration: rising to a plateau set by ``index``."""
    top = 0.5 + 0.05 * index
    accuracy = [round(top * (1 - 0.5 ** (e + 1)), 6) for e in range(E)]
    epochs = {"loss": [1.0 / (e + 1) for e in range(E)], "val_loss": [1.5 / (e + 1) for e in range(E)],
              "val_accuracy": accuracy, "seconds": [0.5 + 0.01 * e for e in range(E)],
              "cpu_seconds": [0.25 + 0.001 * index + 0.01 * e for e in range(E)]}
    if config == DIVERGES:
        epochs = {name: values[:3] for name, values in epochs.items()}
        epochs["loss"][2] = None
    return {"kind": "curve", "space": "tiny", "seed": 0, "config": config, "epochs": epochs,
            "build_seconds": 0.1, "params": 10, "header": 0}


def write(path) -> None:
    """The table: a header, then every configuration's curve (recorded seed 0)."""
    curves.append_record(path, {"kind": "header", "id": 0, "machine": {}, "settings": {"epochs": E}})
    for index, config in enumerate(TINY.configs()):
        curves.append_record(path, curve_of(index, config))
