"""The commands behind the API: ``start`` (create or resume a study, run its workers),
``analyze``, ``ablate`` and ``best``. Each module holds one command and its result type."""
