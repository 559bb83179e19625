"""Live progress of a run on stderr: a rich table per batch size and an overall bar.

Where stderr is no terminal (CI, a log file), one plain line per finished batch size is
written instead, so logs stay readable.
"""

from __future__ import annotations

import math
import sys
from typing import Sequence

from searcher.store.record import MSummary

__all__ = ["RichView", "LineView", "make_view", "format_us"]


def format_us(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _speedup(s: MSummary) -> str:
    return "-" if s.speedup is None else f"{s.speedup:.3f}x"


class LineView:
    """One line per finished batch size."""

    per_trial = False  # no per-trial updates: the search computes no summary for them

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

    def start(self, batch_sizes: Sequence[int], budget_per_m: int | None) -> None:
        budget = f"{budget_per_m} trials each" if budget_per_m else "time budget"
        n = len(batch_sizes)
        print(f"searching {n} batch size{'s' if n != 1 else ''} ({budget})", file=self.stream,
              flush=True)

    def update(self, summary: MSummary) -> None:
        pass

    def finish_m(self, s: MSummary) -> None:
        if s.extra.get("nothing_here"):
            return  # a worker that found this batch size done by others: no news
        print(
            f"M={s.M}: {s.trials} trials ({s.complete} full, {s.pruned} pruned, {s.failed} "
            f"failed, {s.invalid} invalid skipped), best {format_us(s.best_us)} us, winner "
            f"{format_us(s.winner_us)} us, default {format_us(s.default_us)} us"
            + (f", file {format_us(s.against_us)} us" if s.against_us is not None else "")
            + f", speedup {_speedup(s)}",
            file=self.stream, flush=True,
        )

    def close(self) -> None:
        pass


class RichView:
    """A live table (per M: trials, pruned, failed, best, speedup) and a progress bar."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.rows: dict[int, MSummary] = {}
        self.live = None

    def start(self, batch_sizes: Sequence[int], budget_per_m: int | None) -> None:
        from rich.live import Live
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.order = list(batch_sizes)
        self.budget = budget_per_m
        self.progress = Progress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console,
        )
        total = budget_per_m * len(batch_sizes) if budget_per_m else None
        self.task = self.progress.add_task("search", total=total)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4,
                         transient=False)
        self.live.start()

    def _render(self):
        from rich.console import Group
        from rich.table import Table

        table = Table(title="searcher run", expand=False)
        for col in ("M", "trials", "full", "pruned", "failed", "best us", "winner us",
                    "default us", "speedup"):
            table.add_column(col, justify="right")
        for M in self.order:
            s = self.rows.get(M)
            if s is None:
                table.add_row(str(M), *["" for _ in range(8)])
                continue
            budget = f"/{self.budget}" if self.budget else ""
            table.add_row(str(M), f"{s.trials}{budget}", str(s.complete), str(s.pruned),
                          str(s.failed), format_us(s.best_us), format_us(s.winner_us),
                          format_us(s.default_us), _speedup(s))
        return Group(table, self.progress)

    def update(self, summary: MSummary) -> None:
        self.rows[summary.M] = summary
        done = sum(min(s.trials, self.budget or s.trials) for s in self.rows.values())
        self.progress.update(self.task, completed=done)
        if self.live is not None:
            self.live.update(self._render())

    def finish_m(self, summary: MSummary) -> None:
        self.update(summary)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def make_view(live: bool | None = None):
    """A RichView on a terminal, a LineView otherwise (or as asked)."""
    if live is None:
        live = sys.stderr.isatty()
    return RichView() if live else LineView()
