"""The stored record: where studies live and what is written on them.

:mod:`~searcher.store.storage` is the one place a storage is opened and a stored study
is checked against its spec (claims included); :mod:`~searcher.store.outage` rides out a
storage that stops answering; :mod:`~searcher.store.record` is the record's schema
(attribute names, statuses, summaries read back); :mod:`~searcher.store.migrate` copies
a storage written by an older version into the current record (``searcher copy``).
"""
