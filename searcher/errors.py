"""One root exception for everything a user can get wrong, with specific subclasses.

The CLI turns any :class:`SearcherError` into a one-line red message on stderr and exit
code 2; ``--debug`` shows the traceback. Messages name the file, key and value at fault
and the rule they broke.
"""

from __future__ import annotations

__all__ = [
    "SearcherError",
    "ConfigError",
    "SpaceError",
    "SpecError",
    "NoGPUError",
    "BackendError",
    "StorageError",
    "ExportError",
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


class ExportError(SearcherError):
    """A vLLM config file cannot be written or read."""
