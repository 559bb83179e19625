"""The table of a study's batch sizes that ``searcher run`` prints at its end and
``searcher status`` prints (rich, ``--json`` or ``--markdown``), with where the wall time
went."""

from __future__ import annotations

import json

from searcher.cli.common import rich_console
from searcher.measure.measurement import FIDELITIES


def print_summaries(spec, device: str, storage: str, summaries, as_json: bool) -> None:
    """Print the table of the batch sizes' summaries (or JSON with ``as_json``): trials,
    winner, speedup over vLLM's default and where the wall time went, then what measured
    them (GPU, torch and triton versions, or the source of unmeasured times)."""
    from searcher.store.record import DEVICE_INFO, unmeasured_source
    from searcher.tune.view import format_us

    # What measured the times: each distinct device_info once, and the source it names
    # (None: a GPU).
    infos = [json.loads(i) for i in sorted({json.dumps(s.extra[DEVICE_INFO], sort_keys=True)
                                           for s in summaries
                                           if s is not None and s.extra.get(DEVICE_INFO)})]
    sources = [unmeasured_source({DEVICE_INFO: info}) for info in infos]
    synthetic = "synthetic" in sources
    replayed = any(src and src.startswith("replay of") for src in sources)
    # Costs that do not split the wall time: the synthetic ones are made up, and a replay
    # charges the recorded GPU's costs without spending them (they once read as 280% of
    # its wall time).
    unsplit = synthetic or replayed

    def time_json(split) -> dict:
        # Costs that do not split the wall time (above): only its wall time is real
        # (the table leaves the other columns out; here they are null).
        d = split.to_dict()
        if not unsplit:
            return d
        return {k: (v if k == "wall_s" else None) for k, v in d.items()}

    if as_json:
        rows = []
        for s in summaries:
            if s is None:
                continue
            rows.append({
                "M": s.M, "trials": s.trials, "full": s.complete, "pruned": s.pruned,
                "failed": s.failed, "invalid": s.invalid, "duplicate": s.duplicate,
                "best_us": s.best_us if s.best_config else None,
                "winner": s.winner.to_dict() if s.winner else None, "winner_us": s.winner_us,
                "default_us": s.default_us, "against_us": s.against_us,
                "speedup": s.speedup, "noise": s.noise,
                "within_noise": s.within_noise, "decision": s.decision, "cost_s": s.cost_s,
                "wall_s": s.wall_s, "time_s": time_json(s.time), "finalized": s.finalized,
                "running": s.running, "unfinished": s.unfinished,
                "finalists_plan": s.extra.get("final_plan"),
                "device_info": s.extra.get(DEVICE_INFO),
            })
        print(json.dumps({"study": spec.name, "device": device, "storage": storage,
                          "source": ", ".join(sorted({src or "GPU" for src in sources})) or None,
                          "batch_sizes": rows, "total_time_s": time_json(_total_time(summaries))},
                         indent=2))
        return
    from rich.table import Table

    # Costs that do not split the wall time (above): only the wall time is shown.
    time_columns = ("wall s",) if unsplit else TIME_COLUMNS

    def time_cells(split) -> list[str]:
        return [_seconds(split.wall_s)] if unsplit else _time_cells(split)

    table = Table(title=f"{spec.name} on {device} ({storage})")
    against = any(s is not None and s.against_us is not None for s in summaries)
    for col in ("M", "trials", "full", "pruned", "failed", "best us", "winner", "winner us",
                "default us", *(("file us",) if against else ()), "speedup", *time_columns):
        table.add_column(col, justify="left" if col == "winner" else "right")
    for s in summaries:
        if s is None:
            continue
        winner = "-"
        if s.winner:
            is_default = s.winner == spec.kernel.default_config(spec.shape, s.M)
            winner = s.winner.short() + (" (default)" if is_default else "")
        table.add_row(
            str(s.M), str(s.trials), str(s.complete), str(s.pruned), str(s.failed),
            format_us(s.best_us), winner, format_us(s.winner_us),
            format_us(s.default_us), *((format_us(s.against_us),) if against else ()),
            _speedup_text(s), *time_cells(s.time),
        )
    total_split = _total_time(summaries)
    total = total_split.wall_s
    table.add_row("total", *[""] * (len(table.columns) - 1 - len(time_columns)),
                  *time_cells(total_split), end_section=True)
    console = rich_console()
    console.print(table)
    for info, source in zip(infos, sources):
        if source is not None:  # no GPU measured these times: say what did
            console.print(f"not measured on a GPU: {source} times for {info.get('name', '?')}")
            continue
        console.print(f"measured on {info.get('name', '?')} "
                      f"(torch {info.get('torch_version', '?')}, "
                      f"triton {info.get('triton_version', '?')}, driver "
                      f"{info.get('driver_version', '?')}, backend {info.get('backend', '?')})")
    open_trials = [(s.M, s.running, s.unfinished) for s in summaries
                   if s is not None and (s.running or s.unfinished)]
    if open_trials:
        console.print(
            "trials still RUNNING: " + ", ".join(
                f"M={M}: {n} being measured, {u} other" for M, n, u in open_trials)
            + " (a run in progress measures and asks ahead; one that was killed leaves them: "
              "the next run on this storage fails them as interrupted and queues their "
              "configs again)")
    held = ("the search loop's time, no GPU held" if sources and None not in sources
            else "on a GPU, the GPU minutes the search held the device")
    finals = {s.extra.get("final_fidelity") for s in summaries
              if s is not None and s.winner is not None}
    if finals:
        replays = sorted(f"{FIDELITIES[f].replays} replays" if f in FIDELITIES else "?"
                         for f in finals)
        plans = {s.M: s.extra["final_plan"] for s in summaries if s is not None
                 and s.winner is not None and s.extra.get("final_plan")}
        calls = sorted({p["calls_per_graph"] for p in plans.values()})
        over = [M for M, p in plans.items() if p.get("within_budget") is False]
        cut = [M for M, p in plans.items() if p.get("finalists", 0) < p.get("of", 0)]
        stopped = [M for M, p in plans.items() if p.get("stopped")]
        of = "" if (not calls or calls == [10]) and not stopped else (
            f" of graphs of {calls[0]}" + (f"-{calls[-1]}" if len(calls) > 1 else "")
            + (" layer call" if calls == [1] else " layer calls")
            + ", as many as fit the finalists' budget"
            + (f"; fewer finalists raced at M={','.join(map(str, cut))}" if cut else "")
            + (f"; planned over the budget at M={','.join(map(str, over))}, even at one call a "
               "graph and at most one finalist" if over else "")
            + (f"; the budget ended the rounds of an undecided pair at "
               f"M={','.join(map(str, stopped))} (its incumbent, vLLM's default or the file "
               "to beat, stayed ahead of its candidate)"
               if stopped else "")
            + ": README, \"Finalists at a bounded cost\"")
        note = ("best us: the search's fastest measurement (20 replays of graphs of 10 layer "
                "calls, configs one after another); winner us and default us: the "
                f"finalists' side-by-side re-measurement ({', '.join(replays)}{of}), which "
                "picks the winner. At large M best us can read several % below: README, "
                "\"The phase bias\"")
        console.print(note)
    console.print(f"wall time stored for these batch sizes: {total / 60:.1f} min ({held})")
    if replayed:
        console.print("where the wall time went: not shown, a replay charges the recorded "
                      "GPU's costs without spending them")
    elif synthetic:
        console.print("where the wall time went: not shown, the synthetic costs are made up")
    else:
        console.print(_time_note(total_split))


#: The status table's columns of where the wall time went (see searcher.store.record.TimeSplit).
TIME_COLUMNS = ("measuring s", "compile s", "finalists s", "host s", "wall s")


def _total_time(summaries):
    from searcher.store.record import TimeSplit

    total = TimeSplit()
    for s in summaries:
        if s is not None:
            total = total + s.time
    return total


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _time_cells(split) -> list[str]:
    return [_seconds(split.measuring_s), _seconds(split.compile_s),
            _seconds(split.finalists_s), _seconds(split.host_s), _seconds(split.wall_s)]


def _time_note(split) -> str:
    """One line: the total's parts as shares of the wall time."""
    def part(name: str, value: float | None) -> str:
        if value is None:
            return f"{name} unrecorded"
        share = f" ({100 * value / split.wall_s:.0f}%)" if split.wall_s > 0 else ""
        return f"{name} {value / 60:.1f} min{share}"

    gpu = "" if split.gpu_s is None else f"; of measuring, GPU replays {split.gpu_s / 60:.1f} min"
    return ("where the wall time went: " + ", ".join(
        [part("measuring", split.measuring_s), part("compile waits", split.compile_s),
         part("finalists", split.finalists_s), part("host overhead", split.host_s)])
        + gpu + " (host overhead = wall - measuring - compile waits - finalists; "
        '"-": an older record lacks the finalists\' cost)')


def _speedup_text(s) -> str:
    if s.speedup is None:
        return "-"
    return f"{s.speedup:.3f}" + (" (= within noise)" if s.within_noise else "")


def markdown(spec, device: str, summaries) -> str:
    """The batch sizes' summaries as a Markdown table (``searcher status --markdown``); the
    winner marked "(default)" where it is vLLM's, and the time column the GPU time where
    a GPU measured, else the search loop's time (synthetic or replayed: no GPU held)."""
    from searcher.store.record import DEVICE_INFO, unmeasured_source
    from searcher.tune.view import format_us

    shown = [s for s in summaries if s is not None]
    info = next((s.extra.get(DEVICE_INFO) for s in shown if s.extra.get(DEVICE_INFO)), None)
    source = unmeasured_source({DEVICE_INFO: info}) if info else None
    seconds = "GPU s" if source is None else "wall s"
    lines = [
        f"| M | trials | full | pruned | failed | winner ({'/'.join(spec.kernel.config_keys)}) "
        f"| winner us | default us | speedup | noise % | {seconds} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for s in shown:
        total += s.wall_s
        w = s.winner
        label = "/".join(str(v) for v in w.astuple()) if w else "-"
        if w is not None and w == spec.kernel.default_config(spec.shape, s.M):
            label += " (default)"
        lines.append(
            f"| {s.M} | {s.trials} | {s.complete} | {s.pruned} | {s.failed} | {label} | "
            f"{format_us(s.winner_us)} | {format_us(s.default_us)} | {_speedup_text(s)} | "
            f"{f'{100 * s.noise:.1f}' if s.noise is not None else '-'} | {s.wall_s:.0f} |")
    if info:
        lines.append("")
        if source is None:
            lines.append(f"{spec.name} on {info.get('name')} (torch "
                         f"{info.get('torch_version')}, triton {info.get('triton_version')}, "
                         f"backend {info.get('backend')}); GPU time {total / 60:.1f} min.")
        else:
            lines.append(f"{spec.name} for {info.get('name')}, not measured on a GPU "
                         f"({source}): the search loop's time {total / 60:.1f} min, no GPU "
                         "held.")
    return "\n".join(lines)
