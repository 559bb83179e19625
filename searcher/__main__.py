"""``python -m searcher``: the same as the ``searcher`` command (workers start this way)."""

import sys

from searcher.cli import main

sys.exit(main())
