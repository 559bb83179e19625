"""searcher decide: the stored winners decided again under the current rule, by measuring
(synthetic here) or from the finalists' stored rounds."""

from __future__ import annotations

import json
import dataclasses
from pathlib import Path

import optuna
import pytest

from searcher.store import record
from searcher.cli import main
from searcher.kernels.fused_moe import FUSED_MOE
from searcher.tune.decide import redecide, redecide_stored
from searcher.tune.search import SearchOptions, run_search
from searcher.study.spec import load_spec
from searcher.measure.synthetic import SyntheticBenchmarker

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA_H100_80GB_HBM3"


@pytest.fixture()
def searched(tmp_path):
    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    run_search(spec, SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=2),
               SearchOptions(device=H100, storage_url=url, batch_sizes=[64], trials_per_m=8))
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(url)
               if s.study_name.startswith("fused_moe:search:")]
    return spec, url, optuna.load_study(study_name=name, storage=url)


def _set_rounds(study, candidate_us, default_us):
    """Replace the stored finalists by one candidate and the default with these rounds."""
    final = study.user_attrs[record.FINAL]
    default = next(e for e in final["entries"] if e["default"])
    other = {**default["config"], "num_stages": default["config"]["num_stages"] + 1}
    entries = [{"config": other, "times_us": candidate_us, "median_us": min(candidate_us),
                "default": False, "against": False},
               {"config": default["config"], "times_us": default_us,
                "median_us": min(default_us), "default": True, "against": False}]
    study.set_user_attr(record.FINAL, {**final, "entries": entries, "winner": other,
                                       "winner_us": min(candidate_us)})
    return other, default["config"]


def test_stored_rounds_keep_a_winner_the_rule_confirms(searched):
    spec, _, study = searched
    other, _ = _set_rounds(study, [95.0, 95.5, 94.8, 95.2, 95.1], [100.0, 100.3, 99.9, 100.1, 100.2])
    s = redecide_stored(spec.kernel, study, 64)
    assert s.winner == spec.kernel.config_from_dict(other)
    final = study.user_attrs[record.FINAL]
    assert final["decided_from"] == "stored rounds"
    assert final["decision"]["outcome"] == "faster"
    assert final["previous"]["winner"] == other


def test_stored_rounds_too_few_for_the_rule_give_the_default(searched):
    spec, _, study = searched
    other, default = _set_rounds(study, [90.0, 90.1], [100.0, 100.2])  # 10% in 2 rounds
    s = redecide_stored(spec.kernel, study, 64)
    assert s.winner == spec.kernel.config_from_dict(default)
    assert s.winner_us == 100.0
    assert "at least 5 paired rounds" in s.decision
    assert study.user_attrs[record.FINAL]["previous"]["winner"] == other


def test_measuring_decide_remeasures_the_same_finalists(searched):
    spec, url, study = searched
    before = study.user_attrs[record.FINAL]
    bench = SyntheticBenchmarker(FUSED_MOE, spec.shape, device=H100, seed=5)
    out = redecide(spec, bench, SearchOptions(device=H100, storage_url=url), [1, 64])
    assert out[1] is None  # nothing searched there
    after = optuna.load_study(study_name=study.study_name, storage=url).user_attrs[record.FINAL]
    assert [e["config"] for e in after["entries"]] == [e["config"] for e in before["entries"]]
    # Every entry measured anew (the race may drop a finalist after its first round);
    # vLLM's default in every round.
    assert all(e["times_us"] for e in after["entries"])
    assert [e["times_us"] for e in after["entries"]] != [e["times_us"] for e in before["entries"]]
    default = next(e for e in after["entries"] if e["default"])
    assert len(default["times_us"]) == after["rounds"]
    assert after["previous"]["winner"] == before["winner"]
    assert after["trials"] == before["trials"]  # still the finished search's record
    assert out[64].finalized


def test_cli_decide_and_export(searched, tmp_path, capsys):
    spec, url, study = searched
    _set_rounds(study, [90.0, 90.1], [100.0, 100.2])
    assert main(["decide", "--study", spec.name, "--storage", url, "--stored"]) == 0
    text = capsys.readouterr().out
    assert "M=64: M32 N64 K128 G1 w4 s3 (vLLM's default), was" in text
    assert "1 of 1 batch sizes changed" in text
    # The export command it suggests works as printed (the study holds M=64 only).
    import re
    import shlex

    hint = re.search(r"`searcher (export [^`]*) --out DIR`", " ".join(text.split())).group(1)
    assert "--batch-sizes 64" in hint
    assert main([*shlex.split(hint), "--out", str(tmp_path)]) == 0
    exported = (tmp_path / "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json").read_text()
    assert '"64": {\n        "BLOCK_SIZE_M": 32,\n        "BLOCK_SIZE_N": 64' in exported


def test_cli_decide_on_a_storage_without_the_study_writes_nothing(searched, tmp_path, capsys):
    """Refused before anything is written: a storage without the study keeps its studies,
    a missing storage file is not made."""
    _, url, _ = searched
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    for extra in (["--stored"], ["--synthetic"]):
        assert main(["decide", "--study", "h200-e64-n1408", "--storage", url, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds no finished search of h200-e64-n1408" in err[0]
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(url)) == names
    missing = tmp_path / "missing.db"
    assert main(["decide", "--study", "h100-e64-n1408", "--storage", f"sqlite:///{missing}",
                 "--synthetic"]) == 2
    assert "no such file" in capsys.readouterr().err and not missing.exists()


def test_cli_decide_says_synthetic(searched, capsys):
    spec, url, _ = searched
    assert main(["decide", "--study", spec.name, "--storage", url, "--synthetic"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "not measured on a GPU: synthetic times" in out
    assert "--allow-unmeasured --out DIR" in out
    assert main(["decide", "--study", spec.name, "--storage", url, "--stored", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "synthetic"


def test_stored_decide_keeps_a_record_the_rule_decided(tmp_path, capsys):
    """The committed H200 storage was decided on the GPU under the current rule: deciding
    it again from its stored rounds judges the same candidates and changes nothing."""
    import shutil

    db = tmp_path / "h200.db"
    shutil.copy(ROOT / "examples" / "h200-e64-n1408-extended" / "searcher.db", db)
    assert main(["decide", "--study", "h200-e64-n1408-extended", "--storage",
                 f"sqlite:///{db}", "--stored"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 of 18 batch sizes changed" in out
    assert "M=1536: M128 N256 K64 G1 w8 s4, kept: faster than the default beyond noise" in out
    after = {s.study_name: s.user_attrs.get(record.FINAL)
             for s in optuna.get_all_study_summaries(f"sqlite:///{db}")}
    shipped = ROOT / "examples" / "h200-e64-n1408-extended" / "searcher.db"
    assert after == {s.study_name: s.user_attrs.get(record.FINAL)
                     for s in optuna.get_all_study_summaries(f"sqlite:///{shipped}")}


class _GpuLike(SyntheticBenchmarker):
    """The synthetic landscape, reported as a GPU's measurements in a given replay order."""

    def __init__(self, *args, timing, **kw):
        super().__init__(*args, **kw)
        self.timing = timing

    def device_info(self):
        return {**super().device_info(), "backend": "builtin", "triton_version": "3.6.0",
                "torch_version": "2.11.0", "timing": self.timing}


def test_decide_measures_a_study_searched_in_the_old_replay_order(tmp_path):
    """A run refuses to resume a GPU study timed in the old replay order; decide, which
    re-measures everything it compares, decides it and records the order it used."""
    from searcher.errors import StorageError
    from searcher.measure.harness import TIMINGS

    spec = load_spec(ROOT / "studies" / "h100-e64-n1408.toml")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = _GpuLike(FUSED_MOE, spec.shape, device=H100, seed=2, timing=TIMINGS["legacy"])
    opts = SearchOptions(device=H100, storage_url=url, batch_sizes=[64], trials_per_m=6)
    run_search(spec, old, opts)
    new = _GpuLike(FUSED_MOE, spec.shape, device=H100, seed=3, timing=TIMINGS["cycle"])
    with pytest.raises(StorageError, match="timing"):
        run_search(spec, new, dataclasses.replace(opts, trials_per_m=8))
    out = redecide(spec, new, SearchOptions(device=H100, storage_url=url), [64])
    final = optuna.load_study(study_name=next(
        s.study_name for s in optuna.get_all_study_summaries(url)
        if s.study_name.endswith("M=64")), storage=url).user_attrs[record.FINAL]
    assert out[64].finalized and final["timing"] == TIMINGS["cycle"]
    assert "previous" in final


def test_stored_decide_twice_keeps_the_first_record(searched):
    """Deciding a record again the same way writes nothing: its ``previous`` (the search's
    own winner) survives a second ``decide --stored``."""
    spec, _, study = searched
    other, _ = _set_rounds(study, [90.0, 90.1], [100.0, 100.2])
    redecide_stored(spec.kernel, study, 64)
    first = study.user_attrs[record.FINAL]
    redecide_stored(spec.kernel, study, 64)
    assert study.user_attrs[record.FINAL] == first
    assert first["previous"]["winner"] == other
