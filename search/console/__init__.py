"""What the terminal shows: the one formatter (:mod:`search.console.format`) and every table.

- :mod:`search.console.status`: a study's state (``search start``'s summary, ``search status``);
- :mod:`search.console.analysis`: ``search analyze``'s tables;
- :mod:`search.console.ablate` and :mod:`search.console.best`: what ``search ablate`` queued and
  ``search best`` found.

Pure presentation: rich tables from the API's results; imports no Keras, plotly or scipy.
"""
