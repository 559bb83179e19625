"""One root exception for everything a user can get wrong, with specific subclasses.

The CLI turns any :class:`SearcherError` into a one-line red message on stderr and exit
code 2; ``--debug`` shows the traceback. Messages name the file, key and value at fault
and the rule they broke.
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "did_you_mean",
    "SearcherError",
    "ConfigError",
    "SpaceError",
    "SpecError",
    "NoGPUError",
    "BackendError",
    "StorageError",
    "StorageUnavailable",
    "ExportError",
    "BenchmarkerError",
]


class SearcherError(Exception):
    """Root of every error that searcher reports to the user as a message."""


class ConfigError(SearcherError):
    """A kernel config (the six vLLM keys) is malformed."""


class SpaceError(SearcherError):
    """A search-space file is malformed or inconsistent."""


class SpecError(SearcherError):
    """A study spec is malformed, unknown or inconsistent with its storage or GPU."""


class NoGPUError(SearcherError):
    """A command needs a CUDA GPU and none is visible."""


class BackendError(SearcherError):
    """A kernel backend is unknown or cannot be used here."""


class StorageError(SearcherError):
    """The study storage cannot be opened or holds something unexpected."""


class StorageUnavailable(StorageError):
    """The storage stopped answering mid-run and did not answer again in time."""


class ExportError(SearcherError):
    """A vLLM config file cannot be written or read."""


class BenchmarkerError(SearcherError):
    """The process that measures configs cannot be started (or broke its protocol)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for an unknown ``word``, or ``""``.

    Matching ignores case, so ``block_size_m`` finds ``BLOCK_SIZE_M``.
    """
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[match[0]]!r}?)" if match else ""
