"""What is searched: a study and the space it searches.

:mod:`~searcher.study.spec` reads and validates a study spec (``studies/*.toml``: kernel,
GPU, shape, space, budget, storage); :mod:`~searcher.study.space` the search space (the
values each config key may take, and named constraints); :mod:`~searcher.study.expr` the
safe expression language of those constraints; :mod:`~searcher.study.model_study` a study
made from a model's ``config.json`` (``--model``). Nothing here imports torch or triton.
"""
