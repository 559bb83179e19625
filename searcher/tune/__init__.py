"""Running a study: the loops that spend the budget and write the record.

:mod:`~searcher.tune.search` is the search loop (one Optuna study per batch size,
finalists, warm start); :mod:`~searcher.tune.grid` the exhaustive grid;
:mod:`~searcher.tune.workers` several worker processes on one storage;
:mod:`~searcher.tune.run` picks the benchmarker a run measures with and checks the GPU;
:mod:`~searcher.tune.stop` stops a run cleanly on Ctrl-C; :mod:`~searcher.tune.view` shows
live progress.
"""
