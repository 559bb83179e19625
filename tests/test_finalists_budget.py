"""The finalists' run at a bounded cost (issue #13): its plan, and a run that keeps to it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest

from searcher.kernels.fused_moe import FUSED_MOE
from searcher.measure.measurement import FIDELITIES, calls_scale
from searcher.measure.synthetic import SyntheticBenchmarker
from searcher.store.record import summarize_study
from searcher.store.storage import open_storage, study_name
from searcher.strategies.decide import RULE
from searcher.strategies.finalists import (
    MeasurementCost, finalists_budget, plan_finalists, race_measurements)
from searcher.study.spec import load_spec
from searcher.tune.search import SearchOptions, run_search

from helpers import close_call_benchmarker

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"
FULL = FIDELITIES["full"]


def test_the_race_counts_every_finalist_once_then_the_faster_half_then_the_rule():
    # 4 finalists and the default: 5, 3 and 2 measurements in the 3 selection rounds, then
    # the candidate and the default until the rule's 5 rounds.
    assert race_measurements(4, 1) == 5 + 3 + 2 + 2 + 2
    # A file to beat is in every round too.
    assert race_measurements(4, 2) == 6 + 4 + 3 + 3 + 3
    assert race_measurements(1, 1) == 5 * 2
    # No finalist but the default: one round of it alone; with a file to beat, the file is
    # the candidate.
    assert race_measurements(0, 1) == 1
    assert race_measurements(0, 2) == 3 * 2 + 2 * 2


def test_the_budget_is_the_share_of_measuring_plus_itself():
    budget = finalists_budget(6.0, 0.15)
    assert budget / (6.0 + budget) == pytest.approx(0.15)
    assert finalists_budget(6.0, 1.0) is None and finalists_budget(6.0, None) is None
    assert finalists_budget(0.0, 0.15) is None  # nothing measured: nothing to bound by
    assert finalists_budget(float("nan"), 0.15) is None
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="finalists share"):
            finalists_budget(6.0, bad)


def test_the_plan_keeps_the_fidelity_while_it_fits():
    costs = [MeasurementCost(replay_s=0.01, other_s=0.005)] * 3
    plan = plan_finalists(FULL, costs, 4, 1, budget_s=10.0)
    assert plan.fidelity == FULL and plan.finalists == 4 and plan.within_budget
    assert plan.planned_s == pytest.approx(14 * 0.015)
    assert plan_finalists(FULL, costs, 4, 1, budget_s=None).fidelity == FULL
    # No trial recorded a cost: nothing to plan from, and the record says unbounded.
    unplanned = plan_finalists(FULL, [], 4, 1, budget_s=0.001)
    assert unplanned.fidelity == FULL and unplanned.budget_s is None
    # No finalist beside the default: its one measurement fits at the fidelity's calls.
    alone = plan_finalists(FULL, costs, 0, 1, budget_s=1.0)
    assert (alone.fidelity, alone.finalists, alone.measurements) == (FULL, 0, 1)


def test_the_plan_times_fewer_calls_a_graph_before_it_drops_finalists():
    # An H100 at M=1536: 165 ms replaying, 20 ms else, 5.9 s measured by the search.
    dear = MeasurementCost(replay_s=0.165, other_s=0.020)
    budget = finalists_budget(5.9)
    plan = plan_finalists(FULL, [dear, MeasurementCost(0.15, 0.02)], 4, 1, budget)
    assert plan.finalists == 4 and plan.within_budget
    calls = plan.fidelity.calls_per_graph
    assert 1 <= calls < FULL.calls_per_graph
    assert 14 * dear.at(calls, FULL) <= budget < 14 * dear.at(calls + 1, FULL)
    # It keeps the warm-ups and the replays (the routings) and the fidelity's name.
    assert dataclasses.replace(plan.fidelity, calls_per_graph=10) == FULL
    assert calls_scale(plan.fidelity) == calls / 10
    # The more budget, the more calls a graph, never more than the fidelity's.
    seen = [plan_finalists(FULL, [dear], 4, 1, b).fidelity.calls_per_graph
            for b in (0.5, 1.0, 2.0, 4.0, 100.0)]
    assert seen == sorted(seen) and seen[-1] == 10
    # Where one call a graph does not fit the race of 4, fewer finalists race.
    fewer = plan_finalists(FULL, [dear], 4, 1, 13 * dear.at(1, FULL))
    assert fewer.fidelity.calls_per_graph == 1 and fewer.finalists < 4
    assert fewer.within_budget
    # Where nothing fits, the least the rule needs: one finalist, one call a graph.
    least = plan_finalists(FULL, [dear], 4, 1, 0.01)
    assert (least.finalists, least.fidelity.calls_per_graph) == (1, 1)
    assert not least.within_budget and least.measurements == race_measurements(1, 1)


def test_a_finalist_left_out_does_not_make_the_others_rounds_dearer():
    # The lent H100 at M=4096: three finalists offered, the third's replays dearest; two
    # race. Costed by the third, they raced at 1 call a graph where 4 fitted.
    cheap, dear = MeasurementCost(0.060, 0.006), MeasurementCost(0.200, 0.006)
    default = MeasurementCost(0.060, 0.006)
    budget = race_measurements(2, 1) * cheap.at(4, FULL)
    plan = plan_finalists(FULL, [cheap, cheap, dear, default], 3, 1, budget)
    assert plan.finalists == 2 and plan.fidelity.calls_per_graph == 4 and plan.within_budget
    assert plan.planned_s == pytest.approx(race_measurements(2, 1) * cheap.at(4, FULL))
    # Costs not one per entry: every measurement as the dearest, as before.
    blunt = plan_finalists(FULL, [cheap, dear], 3, 1, budget)
    assert blunt.finalists == 2 and blunt.fidelity.calls_per_graph == 1
    # A default without a trial (None) is costed as its finalists are.
    assert plan_finalists(FULL, [cheap, cheap, dear, None], 3, 1, budget) == plan


def _final(url, spec, M):
    study = optuna.load_study(study_name=study_name(FUSED_MOE, "search", spec.shape, H100, M),
                              storage=open_storage(url))
    return study, study.user_attrs["final"]


@pytest.mark.parametrize("share", [0.15, 0.3, 0.5])
def test_a_run_keeps_its_finalists_within_their_share(tmp_path, share):
    # Full measurements dear beside the search's (as at large M on a GPU), so the budget
    # binds: the finalists' rounds time fewer layer calls a graph.
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    bencher = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3,
                                   costs={"full": 0.5})
    url = f"sqlite:///{tmp_path / 's.db'}"
    opts = SearchOptions(device=H100, storage_url=url, batch_sizes=[64, 1536],
                         trials_per_m=16, finalists_share=share)
    run_search(spec, bencher, opts)
    for M in (64, 1536):
        study, final = _final(url, spec, M)
        plan = final["plan"]
        measuring = summarize_study(FUSED_MOE, study, M).time.measuring_s
        assert plan["budget_s"] == pytest.approx(measuring * share / (1 - share))
        assert plan["share"] == share
        assert final["calls_per_graph"] < FULL.calls_per_graph
        racing = [e for e in final["entries"] if not e["default"]]
        assert len(racing) == plan["finalists"] <= plan["of"] <= spec.finalists
        if not plan["within_budget"]:  # the least the rule needs
            assert (final["calls_per_graph"], plan["finalists"]) == (1, 1)
            assert plan["planned_s"] > plan["budget_s"]
        # Within the plan at the rule's minimum rounds; rounds it adds, within the budget.
        elif final["rounds"] <= RULE.min_rounds:
            assert final["cost_s"] <= plan["planned_s"] + 1e-9 <= plan["budget_s"] + 2e-9
        if plan["within_budget"]:
            spent = final["cost_s"] - final["compile_s"]
            assert spent <= plan["budget_s"] + 1e-9
            assert spent / (measuring + spent) <= share + 1e-9


def test_compile_waits_in_the_finalists_rounds_count_as_compile_waits(tmp_path):
    # A measuring process replaced between the trials and the finalists (or a resumed
    # run) compiles the finalists again: those seconds are recorded apart and the time
    # split counts them as compile waits, not as the finalists' re-measurement that the
    # share bounds. Every round's cost is recorded too.
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")

    class Forgetful(SyntheticBenchmarker):
        def measure_round(self, M, configs, fidelity):
            if fidelity != "short" and len(configs) > 1 and not getattr(self, "forgot", 0):
                self.compiled.clear()  # a fresh process: its Triton cache is cold
                self.forgot = 1
            return super().measure_round(M, configs, fidelity)

    bencher = Forgetful(FUSED_MOE, spec.shape, device=H100, seed=3,
                        costs={"full": 0.5, "compile": 2.0})
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, bencher, SearchOptions(device=H100, storage_url=url, batch_sizes=[64],
                                            trials_per_m=16))
    study, final = _final(url, spec, 64)
    first_round = len(final["entries"])  # every entry is measured in the first round
    assert final["compile_s"] == pytest.approx(2.0 * first_round)
    assert len(final["round_s"]) == final["rounds"]
    assert sum(final["round_s"]) == pytest.approx(final["cost_s"])
    t = summarize_study(FUSED_MOE, study, 64).time
    assert t.finalists_s == pytest.approx(final["cost_s"] - final["compile_s"])
    trials_compile = sum(float((tr.user_attrs.get(f) or {}).get("compile_s") or 0.0)
                         for tr in study.trials for f in ("short", "full"))
    assert t.compile_s == pytest.approx(trials_compile + final["compile_s"])


@pytest.mark.parametrize("share", [0.15, 1.0])
def test_rounds_added_while_undecided_stop_at_the_budget(tmp_path, share, capsys):
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    bencher = close_call_benchmarker(FUSED_MOE, spec.shape, device=H100, seed=3)
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, bencher, SearchOptions(device=H100, storage_url=url, batch_sizes=[64],
                                            trials_per_m=16, finalists_share=share))
    study, final = _final(url, spec, 64)
    plan = final["plan"]
    default = spec.kernel.default_config(spec.shape, 64).to_dict()
    assert final["winner"] == default  # never beyond the noise: the default stays
    if share == 1.0:  # unbounded: the rule's own cap
        assert final["rounds"] == RULE.max_rounds and not plan["stopped"]
        return
    assert plan["within_budget"] and plan["stopped"], (plan, final["rounds"], final["cost_s"])
    assert RULE.min_rounds <= final["rounds"] < RULE.max_rounds
    assert final["cost_s"] - final["compile_s"] <= plan["budget_s"] + 1e-9
    assert "budget" in final["decision"]["reason"]
    assert final["decision"]["outcome"] == "equal"
    from searcher.cli import main

    assert main(["status", "--study", "h100-e64-n1408", "--storage", url,
                 "--batch-sizes", "64"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the budget ended the rounds of an undecided pair at M=64" in out
    from searcher.results.report import build_report, render_markdown

    text = render_markdown(build_report(spec, url, H100, batch_sizes=[64]), "cmd", {})
    calls = final["calls_per_graph"]
    assert (f"with graphs of {calls} layer call" in text) == (calls != FULL.calls_per_graph)
    assert "the budget ended the rounds of an undecided pair, whose incumbent stayed" in text


def test_the_budget_note_goes_to_the_pair_it_stopped(tmp_path):
    # With a file to beat: the search's best against the file stays undecided (the file's
    # rounds swing) until the budget ends it, so the file stays ahead of the best; the
    # file is then not faster than the default in every round, and the best, faster in
    # every round, wins against the default by the rule. Only the pair the budget
    # stopped says so.
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    M = 64
    default = FUSED_MOE.default_config(spec.shape, M)
    the_file = dataclasses.replace(default, num_stages=4, GROUP_SIZE_M=16)
    assert the_file != default

    class Swinging(SyntheticBenchmarker):
        def measure_round(self, M, configs, fidelity):
            measured = super().measure_round(M, configs, fidelity)
            if len(configs) < 2:
                return measured
            self.rounds = getattr(self, "rounds", 0) + 1
            file_us = 100.5 if self.rounds % 2 == 0 else 95.1
            return [dataclasses.replace(m, median_us=100.0 if c == default else
                                        file_us if c == the_file else 95.0)
                    for c, m in zip(configs, measured)]

    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, Swinging(FUSED_MOE, spec.shape, device=H100, seed=3),
               SearchOptions(device=H100, storage_url=url, batch_sizes=[M], trials_per_m=16,
                             finalists_share=0.15, against={M: the_file}))
    _, final = _final(url, spec, M)
    assert final["plan"]["stopped"] and final["versus_file"]["outcome"] == "equal"
    assert "budget" in final["versus_file"]["reason"]
    assert final["decision"]["outcome"] == "faster"
    assert "budget" not in final["decision"]["reason"]
    assert final["winner"] not in (default.to_dict(), the_file.to_dict())


def test_an_unbounded_share_measures_at_the_fidelity_of_the_trials(tmp_path):
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    bencher = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3,
                                   costs={"full": 1.0})
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, bencher, SearchOptions(device=H100, storage_url=url, batch_sizes=[64],
                                            trials_per_m=16, finalists_share=1.0))
    _, final = _final(url, spec, 64)
    assert final["calls_per_graph"] == FULL.calls_per_graph
    assert final["plan"]["budget_s"] is None


def test_the_cli_refuses_a_share_outside_0_to_1(tmp_path, capsys):
    from searcher.cli import main

    code = main(["run", "--study", "h100-e64-n1408", "--synthetic", "--finalists-share",
                 "1.5", "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--finalists-share 1.5" in err[0] and "at most 1" in err[0]
    assert not (tmp_path / "s.db").exists()
    code = main(["run", "--study", "h100-e64-n1408", "--synthetic", "--finalists-share", "0",
                 "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--finalists-share 0:" in err[0]  # not 0.0
    # The value as given (not rounded to one that would pass), and decide takes it too.
    for command in ("run", "decide"):
        code = main([command, "--study", "h100-e64-n1408", "--synthetic", "--finalists-share",
                     "1.0000001", "--storage", f"sqlite:///{tmp_path / 's.db'}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "--finalists-share 1.0000001" in err[0]
    assert not (tmp_path / "s.db").exists()


def test_one_slow_trial_does_not_set_what_every_measurement_costs(tmp_path):
    # A measurement's replays are its own trial's; the rest (capture, launches, syncs) is the
    # batch size's median, so one trial that read 300 ms where the host was busy (as on the
    # lent H100) does not make the plan think every measurement costs that.
    from searcher.store import record
    from searcher.tune.finalists import measurement_costs

    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    configs = [spec.kernel.default_config(spec.shape, M) for M in (1, 64, 256, 1024)]
    assert len(set(configs)) == 4
    study = optuna.create_study()
    for i, config in enumerate(configs):
        other = 0.300 if i == 0 else 0.006
        study.add_trial(optuna.trial.create_trial(value=100.0 + i, user_attrs={
            record.CONFIG: config.to_dict(), record.STATUS: "ok",
            record.FULL: {"cost_s": 0.080 + other + 0.5, "compile_s": 0.5, "gpu_s": 0.080}}))
    costs = measurement_costs(FUSED_MOE, study, configs[:2])
    assert len(costs) == 2
    # One per config asked, in its order; None for one without a trial.
    other = dataclasses.replace(configs[0], num_warps=2)
    assert other not in configs
    assert measurement_costs(FUSED_MOE, study, [other, configs[1]])[0] is None
    assert all(c.replay_s == pytest.approx(0.080) for c in costs)
    assert all(c.other_s == pytest.approx(0.006) for c in costs)


def test_the_rest_of_a_measurement_is_the_median_of_every_measurement_at_the_batch_size():
    # At large M most trials are pruned at the short fidelity, so 3-5 full measurements
    # are left; where 3 of 5 read a busy host's 190 ms (the lent H100, three-m.db at
    # M=4096), their median alone made the plan race one finalist at one call a graph.
    # The short measurements capture graphs of the same calls: they count too, the
    # pruned trials' among them; failed ones (no replays timed) do not.
    from optuna.trial import TrialState

    from searcher.store import record
    from searcher.tune.finalists import measurement_costs

    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    configs = [spec.kernel.default_config(spec.shape, M) for M in (1, 64, 256, 1024, 4096)]
    configs = list(dict.fromkeys(configs))[:5]
    study = optuna.create_study()

    def brief(gpu: float, other: float, status: str = "ok") -> dict:
        return {"status": status, "cost_s": gpu + other + 0.2, "compile_s": 0.2, "gpu_s": gpu}

    for i, config in enumerate(configs):  # complete: short and full, 3 of 5 full slow
        study.add_trial(optuna.trial.create_trial(value=100.0 + i, user_attrs={
            record.CONFIG: config.to_dict(), record.STATUS: "ok",
            record.SHORT: brief(0.020, 0.007),
            record.FULL: brief(0.080, 0.190 if i < 3 else 0.010)}))
    for i in range(12):  # pruned at the short fidelity
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED, intermediate_values={0: 200.0 + i}, user_attrs={
                record.CONFIG: dataclasses.replace(configs[0], num_stages=2 + i).to_dict(),
                record.STATUS: "pruned", record.SHORT: brief(0.020, 0.006 + 0.001 * (i % 3))}))
    for i in range(15):  # failed: as many as would pull the median to 6 ms if counted
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, user_attrs={
            record.CONFIG: dataclasses.replace(configs[0], num_warps=1, num_stages=2 + i)
            .to_dict(), record.STATUS: "compile_error",
            record.SHORT: {"status": "compile_error", "cost_s": 1.0, "compile_s": 0.3}}))
    costs = measurement_costs(FUSED_MOE, study, configs)
    assert all(c.replay_s == pytest.approx(0.080) for c in costs)  # its own full trial's
    # 22 measurements: 5 short at 7 ms, 12 short at 6-8 ms, 2 full at 10 ms, 3 at 190 ms.
    assert all(c.other_s == pytest.approx(0.007) for c in costs)


def test_status_names_the_calls_a_graph_of_the_finalists_rounds(tmp_path, capsys):
    from searcher.cli import main

    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    bencher = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3,
                                   costs={"full": 1.0})
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, bencher, SearchOptions(device=H100, storage_url=url,
                                            batch_sizes=[64, 1536], trials_per_m=16))
    finals = {M: _final(url, spec, M)[1] for M in (64, 1536)}
    calls = sorted(f["calls_per_graph"] for f in finals.values())
    assert main(["status", "--study", "h100-e64-n1408", "--storage", url,
                 "--batch-sizes", "64,1536"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    span = f"{calls[0]}" if calls[0] == calls[1] else f"{calls[0]}-{calls[1]}"
    assert f"(20 replays of graphs of {span} layer call" in text
    assert "as many as fit the finalists' budget" in text
    assert 'README, "Finalists at a bounded cost"' in text
    # It names where fewer finalists raced than were offered, and where even the least
    # plan was over the budget.
    cut = [M for M, f in finals.items() if f["plan"]["finalists"] < f["plan"]["of"]]
    over = [M for M, f in finals.items() if not f["plan"]["within_budget"]]
    assert (f"fewer finalists raced at M={','.join(map(str, cut))}" in text) == bool(cut)
    assert (f"planned over the budget at M={','.join(map(str, over))}" in text) == bool(over)
    assert cut or over  # this landscape cuts (else the two lines above test nothing)
    # --json carries the plan of each batch size.
    assert main(["status", "--study", "h100-e64-n1408", "--storage", url,
                 "--batch-sizes", "64,1536", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["batch_sizes"]
    for row in rows:
        plan = row["finalists_plan"]
        assert plan["calls_per_graph"] == finals[row["M"]]["calls_per_graph"]
        assert plan["budget_s"] == finals[row["M"]]["plan"]["budget_s"]


def test_the_replanning_and_time_split_benchmarks_read_a_stored_run(tmp_path, capsys):
    # benchmarks/finalists_plan.py on a run made without a bound: it prints the recorded
    # finalists (10 calls a graph) and the plan for the same entries within 15%.
    import importlib.util

    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_search(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=3),
               SearchOptions(device=H100, storage_url=url, batch_sizes=[64, 1536],
                             trials_per_m=24, finalists_share=1.0))
    loader = importlib.util.spec_from_file_location(
        "finalists_plan", ROOT / "benchmarks" / "finalists_plan.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    assert module.main(["--study", "h100-e64-n1408", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "not measured on a GPU (synthetic)" in out.splitlines()[0]
    plan_table, round_table = out.split("Round by round")
    rows = [line.split("|")[1:-1] for line in plan_table.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0]) for r in rows] == [64, 1536]
    # Round by round: each round's ms a measurement and the configs it measured multiply
    # back to the round's recorded seconds.
    by_round = [line.split("|")[1:-1] for line in round_table.splitlines()
                if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0]) for r in by_round] == [64, 1536]
    for r in by_round:
        _, final = _final(url, spec, int(r[0]))
        cells = [c.strip().rstrip(")").split(" (") for c in r[2].split(",")]
        assert len(cells) == len(final["round_s"]) == final["rounds"]
        for (ms, n), seconds in zip(cells, final["round_s"]):
            assert float(ms) * int(n) / 1000 == pytest.approx(seconds, rel=0.01, abs=1e-4)
    for r in rows:
        M = int(r[0])
        _, final = _final(url, spec, M)
        assert float(r[2]) == pytest.approx(final["cost_s"], abs=0.005)
        assert int(r[4]) == FULL.calls_per_graph  # recorded unbounded
        planned_share = r[11].strip()
        if "(over)" not in planned_share:
            assert float(planned_share.rstrip("%")) <= 15.0
    assert module.main(["--study", "h100-e64-n1408", "--storage", url, "--share", "0"]) == 2
    # Another study than the storage holds: one line, exit 2 (not an empty table).
    capsys.readouterr()
    assert module.main(["--study", "h200-e64-n1408", "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no study of h200-e64-n1408" in err[0]
    # time_split.py reads the same storage the same way, and refuses the same study.
    loader = importlib.util.spec_from_file_location(
        "time_split", ROOT / "benchmarks" / "time_split.py")
    split = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(split)
    assert split.main(["--study", "h100-e64-n1408", "--storage", url]) == 0
    assert [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2].isdigit()] == ["64", "1536"]
    assert split.main(["--study", "h200-e64-n1408", "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "time_split.py: " in err[0] and "holds no study" in err[0]

