"""Tests for searcher.store.migrate: ``searcher copy`` of a storage written by an older version."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from searcher.cli import main
from searcher.kernels.fused_moe.config import KernelConfig
from searcher.study.space import space_from_dict
from searcher.store.storage import open_storage

SPACE = space_from_dict({"schema": 1, "params": {
    "BLOCK_SIZE_M": [16, 32, 64], "BLOCK_SIZE_N": [32, 64], "BLOCK_SIZE_K": [64],
    "GROUP_SIZE_M": [1, 8], "num_warps": [4, 8], "num_stages": [2, 3]}}, where="t", name="t")
NAME = "fused_moe:search:E=8,N=64,H=64,top_k=2,bf16:NVIDIA_H200:M=1"


def _old_storage(url: str) -> None:
    """As searcher stored before: duplicates FAIL, no config keys, no metric name, and a
    claim study per finalists' run."""
    storage = open_storage(url)
    study = optuna.create_study(study_name=NAME, storage=storage)
    study.set_user_attr("kernel", "fused_moe")
    config = KernelConfig(32, 64, 64, 8, 4, 3)
    common = dict(params=SPACE.to_params(config), distributions=SPACE.distributions())
    study.add_trial(create_trial(value=12.5, user_attrs={"status": "ok",
                                                         "config": config.to_dict()}, **common))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={
        "status": "duplicate", "duplicate_of": 0, "config": config.to_dict()}, **common))
    claim = optuna.create_study(study_name=f"fused_moe-claim:{NAME}:final@1", storage=storage)
    claim.set_user_attr("host", "h")
    claim.set_user_attr("pid", 7)


def test_copy_writes_the_record_this_version_writes(tmp_path, capsys):
    old, new = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    _old_storage(old)
    assert main(["copy", "--storage", old, "--to", new]) == 0
    assert capsys.readouterr().out.split() == [NAME, "searcher:claims"]
    study = optuna.load_study(study_name=NAME, storage=open_storage(new))
    assert study.metric_names == ["median_us"]
    ok, duplicate = study.trials
    assert ok.params == SPACE.to_params(KernelConfig(32, 64, 64, 8, 4, 3))  # resumes as is
    assert (ok.state, ok.value, ok.user_attrs["BLOCK_SIZE_M"], ok.user_attrs["num_warps"]) == \
        (TrialState.COMPLETE, 12.5, 32, 4)
    assert (duplicate.state, duplicate.user_attrs["duplicate_of"]) == (TrialState.PRUNED, 0)
    claims = optuna.load_study(study_name="searcher:claims", storage=open_storage(new)).trials
    assert [(t.state, t.user_attrs["claim"], t.user_attrs["pid"]) for t in claims] == [
        (TrialState.COMPLETE, f"{NAME}:final@1", 7)]
    # The original is unchanged.
    assert optuna.load_study(study_name=NAME, storage=open_storage(old)).trials[1].state == \
        TrialState.FAIL


def test_copy_refuses_a_target_that_holds_studies(tmp_path, capsys):
    old = f"sqlite:///{tmp_path / 'old.db'}"
    _old_storage(old)
    assert main(["copy", "--storage", old, "--to", old]) == 2
    err = capsys.readouterr().err
    assert "is the storage copied from (--storage)" in err and len(err.strip().splitlines()) == 1
    new = f"sqlite:///{tmp_path / 'new.db'}"
    assert main(["copy", "--storage", old, "--to", new]) == 0
    capsys.readouterr()
    assert main(["copy", "--storage", old, "--to", new]) == 2
    err = capsys.readouterr().err
    assert f"--to {new}: already holds" in err and len(err.strip().splitlines()) == 1
    nowhere = f"sqlite:///{tmp_path / 'nowhere' / 'c.db'}"
    assert main(["copy", "--storage", old, "--to", nowhere]) == 2
    assert f"--to {nowhere}: folder" in capsys.readouterr().err
