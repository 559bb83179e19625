"""Reading results back from a storage (no GPU needed).

:mod:`~searcher.results.winners` summarises a stored study per batch size and picks the
winners to export; :mod:`~searcher.results.report` writes the evidence for one GPU
(``searcher report``); :mod:`~searcher.results.compare` sets the search beside the grid,
vLLM's default and an existing file (``searcher compare``); :mod:`~searcher.results.export`
writes and reads vLLM's tuned-config files.
"""
