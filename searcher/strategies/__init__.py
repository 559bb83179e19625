"""How the search chooses: which config to try next, which to stop early, which wins.

:mod:`~searcher.strategies.samplers` builds Optuna samplers by name (and the views of a
study they ask); :mod:`~searcher.strategies.pruners` the pruners, searcher's
``BestRatioPruner`` among them; :mod:`~searcher.strategies.decide` the decision rule that
says whether a finalist beats vLLM's default beyond the noise.
"""
