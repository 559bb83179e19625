"""``python -m searcher.cli``: the same as ``python -m searcher`` and the ``searcher``
command (it ran so while the command line was one module, ``searcher/cli.py``)."""

import sys

from searcher.cli import main

sys.exit(main())
