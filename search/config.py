"""A study's configuration, stored with the study so a worker needs only the store URL and the name."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_TRIALS = 10
DEFAULT_EPOCHS = 10
DEFAULT_SEED = 0
DEFAULT_SAMPLER = "tpe"
# Optuna's own default pruner (what studies made before --pruner existed used).
DEFAULT_PRUNER = "median"
# Heartbeats: a worker stamps its running trial every HEARTBEAT seconds; a trial whose stamp is
# older than GRACE seconds is failed and retried (Optuna's RDB heartbeat). The grace period must
# outlast a store restart and a busy machine's scheduling delays, hence several heartbeats.
DEFAULT_HEARTBEAT_S = 10
DEFAULT_GRACE_S = 60
# How often one trial is re-run after its worker died (a retry that dies too counts again).
DEFAULT_MAX_RETRY = 3
# Best-epoch weights are kept for this many of the best trials (0: none); see search.artifacts.
DEFAULT_KEEP_BEST = 3


@dataclass
class StudyConfig:
    space_path: str
    data: str
    epochs: int = DEFAULT_EPOCHS
    objective: str = "val_accuracy"
    direction: str = "max"
    sampler: str = DEFAULT_SAMPLER
    seed: int = DEFAULT_SEED
    pruner: str = DEFAULT_PRUNER
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    grace_s: int = DEFAULT_GRACE_S
    max_retry: int = DEFAULT_MAX_RETRY
    # --trial-timeout: a trial running longer is stopped and failed with its reason (None: no limit)
    trial_timeout_s: float | None = None
    fixed: dict = field(default_factory=dict)  # --set NAME=VALUE, already coerced to the space's types
    space: dict = field(default_factory=dict)  # keras_tuner.HyperParameters.get_config() of the discovered space
    keep_best: int = DEFAULT_KEEP_BEST  # checkpoints kept: the best-epoch weights of the top K trials
    artifacts: str | None = None  # artifact store: a folder or s3://bucket[/prefix]; None: next to the store

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> StudyConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})
