"""A study's search space: the space module (``loader``), the Keras Tuner -> Optuna bridge
(``bridge``), and Optuna's samplers and pruners by name (``samplers``, ``pruners``)."""
