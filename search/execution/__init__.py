"""Running trials: the worker loop (``worker``), one trial (``runner``, ``callbacks``), the faults
a worker survives (``faults``), best-epoch checkpoints (``checkpoints``), GPUs (``devices``) and
the pool of local worker processes (``pool``, with its own entry point)."""
