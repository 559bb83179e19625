"""Where measurements come from, and what one is.

:mod:`~searcher.measure.measurement` holds the value a timing produces (failures included)
and the fidelities; :mod:`~searcher.measure.harness` the ``Benchmarker`` protocol and the
GPU benchmarker; :mod:`~searcher.measure.isolation` the same in a child process;
:mod:`~searcher.measure.replay` and :mod:`~searcher.measure.synthetic` benchmarkers
without a GPU (recorded and made-up times); :mod:`~searcher.measure.device` which GPU
measured; :mod:`~searcher.measure.stats` the small statistics used to judge timings;
:mod:`~searcher.measure.bench` the ``searcher bench`` command.
"""
