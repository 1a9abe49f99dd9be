"""A study's configuration, stored with the study so a worker needs only the store URL and the name."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_TRIALS = 10
DEFAULT_EPOCHS = 10
DEFAULT_SEED = 0
DEFAULT_SAMPLER = "tpe"


@dataclass
class StudyConfig:
    space_path: str
    data: str
    epochs: int = DEFAULT_EPOCHS
    objective: str = "val_accuracy"
    direction: str = "max"
    sampler: str = DEFAULT_SAMPLER
    seed: int = DEFAULT_SEED
    fixed: dict = field(default_factory=dict)  # --set NAME=VALUE, already coerced to the space's types
    space: dict = field(default_factory=dict)  # keras_tuner.HyperParameters.get_config() of the discovered space

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "StudyConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})
