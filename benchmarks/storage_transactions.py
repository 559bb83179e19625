"""SQL transactions and statements each thread of a search sends to its SQLite storage.

Issue #13: at small batch sizes on the H200 the main thread's storage work per trial
outlasted the measurement, and the asker's transactions held the SQLite file the main
thread waited for. This counts, per thread, the transactions (``BEGIN IMMEDIATE``, reads
included: every Optuna storage call is one) and the statements of a synthetic search (the
spec's seed, in this process, no measurement costs) into a fresh SQLite file:

    python benchmarks/storage_transactions.py
    python benchmarks/storage_transactions.py --study h200-e64-n1408 --M 64 --trials 40

The counts depend on the code, not on the machine (the asker's vary a little from run to
run: how far it asks ahead depends on thread timing). To compare with another commit, run
this script with that commit's package first on the path, in its checkout::

    git worktree add /tmp/old REV && cd /tmp/old
    PYTHONPATH=/tmp/old python /path/to/this/checkout/benchmarks/storage_transactions.py

(an editable install of another checkout lends it the subpackages the old one lacks: check
that both layouts import from the checkout you mean).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout's package can be counted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="h200-e64-n1408", help="default h200-e64-n1408")
    ap.add_argument("--M", type=int, default=64, help="batch size (default 64)")
    ap.add_argument("--trials", type=int, default=40, help="trial budget (default 40)")
    args = ap.parse_args(argv)

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import searcher

    if (Path(searcher.__file__).parent / "study").is_dir():
        from searcher.measure.synthetic import SyntheticBenchmarker
        from searcher.study.spec import find_spec, load_spec
        from searcher.tune.search import SearchOptions, run_search
    else:  # a checkout from before the package's layers (commit 8ab2154)
        from searcher.search import SearchOptions, run_search  # type: ignore[no-redef]
        from searcher.spec import find_spec, load_spec  # type: ignore[no-redef]
        from searcher.synthetic import SyntheticBenchmarker  # type: ignore[no-redef]

    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    main_thread = threading.main_thread()

    def count(_conn, _cursor, statement: str, *_args) -> None:
        thread = threading.current_thread()
        who = "main" if thread is main_thread else thread.name.rsplit("_", 1)[0]
        counts[who, "transactions" if statement.startswith("BEGIN") else "statements"] += 1

    event.listen(Engine, "before_cursor_execute", count)
    spec = load_spec(find_spec(args.study))
    with tempfile.TemporaryDirectory() as tmp:
        opts = SearchOptions(device=spec.gpu, storage_url=f"sqlite:///{tmp}/s.db",
                             batch_sizes=[args.M], trials_per_m=args.trials)
        bencher = SyntheticBenchmarker(spec.kernel, spec.shape, device=opts.device,
                                       seed=spec.seed)
        run_search(spec, bencher, opts)
    print(f"synthetic search of {args.study} at M={args.M}, {args.trials} trials")
    print("| thread | transactions | other statements |")
    print("|---|---|---|")
    for who in sorted({w for w, _ in counts}, key=lambda w: (w != "main", w)):
        print(f"| {who} | {counts[who, 'transactions']} | {counts[who, 'statements']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
