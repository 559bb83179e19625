"""Tests for searcher.study.space: loading, validating, enumerating and sampling search spaces."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from searcher.measure.device import KNOWN_GPUS, GpuFacts
from searcher.errors import SpaceError
from searcher.kernels.fused_moe import FUSED_MOE, KernelConfig, Shape, vllm_default_config
from searcher.study.space import (
    Param,
    Space,
    load_space,
    space_from_dict,
)

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "spaces"
DATA = Path(__file__).resolve().parent / "data" / "spaces"

SHAPE = Shape(E=64, N=1408, hidden=2048, top_k=6, dtype="bf16")
H100 = KNOWN_GPUS["NVIDIA_H100_80GB_HBM3"]
VLLM_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)


def context(M: int = 64, gpu: GpuFacts = H100, shape: Shape = SHAPE) -> dict[str, int]:
    return FUSED_MOE.context(shape, M, gpu)


def valid_dict(**params: object) -> dict[str, object]:
    """A minimal valid space as parsed TOML, with some params replaced."""
    base: dict[str, object] = {
        "BLOCK_SIZE_M": [16, 32],
        "BLOCK_SIZE_N": [32, 64],
        "BLOCK_SIZE_K": [64],
        "GROUP_SIZE_M": [1],
        "num_warps": [4],
        "num_stages": [3],
    }
    base.update(params)
    return {"schema": 1, "params": base}


# -- the shipped spaces --------------------------------------------------------------


def test_vllm_432() -> None:
    space = load_space(SPACES / "vllm-432.toml")
    assert space.name == "vllm-432"
    assert [p.values for p in space.params] == [
        (16, 32, 64, 128),
        (32, 64, 128),
        (64, 128),
        (1, 16, 32),
        (4, 8),
        (2, 3, 4),
    ]
    assert space.constraints == ()
    assert space.raw_size() == 432
    configs = space.enumerate(context())
    assert len(configs) == 432 == len(set(configs))


def test_vllm_1920() -> None:
    space = load_space(SPACES / "vllm-1920.toml")
    assert [p.values for p in space.params] == [
        (16, 32, 64, 128, 256),
        (32, 64, 128, 256),
        (64, 128, 256),
        (1, 16, 32, 64),
        (4, 8),
        (2, 3, 4, 5),
    ]
    assert space.constraints == ()
    assert space.raw_size() == 1920
    configs = space.enumerate(context())
    assert len(configs) == 1920 == len(set(configs))
    # The reduced grid lies inside the full one.
    assert set(load_space(SPACES / "vllm-432.toml").enumerate(context())) <= set(configs)


def test_extended_reaches_beyond_both_grids() -> None:
    space = load_space(SPACES / "extended.toml")
    assert space.raw_size() == 5 * 5 * 4 * 5 * 4 * 6
    wide = load_space(SPACES / "vllm-1920.toml")
    for p, q in zip(space.params, wide.params):
        assert set(q.values) <= set(p.values), p.name
    assert {c.name for c in space.constraints} == {
        "shared_memory",
        "accumulator_in_registers",
        "warps_suit_tile",
        "k_tile_fits",
        "block_m_fits_rows",
        "group_needs_row_blocks",
    }


def test_extended_counts_on_h100() -> None:
    # Update deliberately when a constraint of extended.toml changes.
    space = load_space(SPACES / "extended.toml")
    counts = {M: len(space.enumerate(context(M))) for M in (1, 64, 1024, 4096)}
    assert counts == {1: 336, 64: 1992, 1024: 6550, 4096: 6550}


@pytest.mark.parametrize("gpu", sorted(KNOWN_GPUS))
def test_extended_keeps_vllm_default_config(gpu: str) -> None:
    space = load_space(SPACES / "extended.toml")
    for M in VLLM_BATCH_SIZES:
        config = vllm_default_config(M, SHAPE.E)
        assert space.violations(config, context(M, KNOWN_GPUS[gpu])) == [], (M, config)


def test_extended_keeps_the_hopper_winner_and_drops_the_hopeless() -> None:
    space = load_space(SPACES / "extended.toml")
    big = context(4096)
    # BLOCK_SIZE_N = 256 with 4 stages beat the default by 7% at M = 4096 on H200.
    winner = KernelConfig(128, 256, 64, 1, 8, 4)
    assert space.is_valid(winner, big)
    assert space.is_valid(winner, context(4096, KNOWN_GPUS["NVIDIA_H200"]))
    assert space.violations(KernelConfig(128, 256, 64, 1, 8, 5), big) == ["shared_memory"]
    # Without wgmma (BLOCK_SIZE_M < 64 or 2 warps) Triton keeps num_stages - 1 buffers:
    # 144 * 256 * 2 * 3 = 221,184 bytes fit, 4 stages' worth would not.
    assert space.violations(KernelConfig(16, 128, 256, 1, 4, 4), big) == []
    assert space.violations(KernelConfig(16, 128, 256, 1, 4, 5), big) == ["shared_memory"]
    assert space.violations(KernelConfig(64, 64, 256, 1, 4, 4), big) == ["shared_memory"]
    assert space.violations(KernelConfig(64, 64, 256, 1, 2, 4), big) == []
    assert space.violations(KernelConfig(256, 256, 64, 1, 16, 3), big) == [
        "accumulator_in_registers"
    ]
    assert space.violations(KernelConfig(128, 256, 64, 1, 4, 3), big) == [
        "accumulator_in_registers"
    ]
    assert space.violations(KernelConfig(32, 32, 64, 1, 16, 3), big) == ["warps_suit_tile"]
    assert space.violations(KernelConfig(128, 64, 64, 1, 2, 3), big) == ["warps_suit_tile"]
    assert space.violations(KernelConfig(64, 64, 64, 1, 2, 3), big) == []
    one = context(1)
    assert space.violations(KernelConfig(32, 64, 128, 1, 4, 4), one) == ["block_m_fits_rows"]
    assert space.violations(KernelConfig(16, 64, 128, 16, 4, 4), one) == [
        "group_needs_row_blocks"
    ]
    tiny = context(1, shape=Shape(E=8, N=16, hidden=24, top_k=2))
    assert space.violations(KernelConfig(16, 64, 64, 1, 4, 4), tiny) == ["k_tile_fits"]
    assert space.violations(KernelConfig(16, 64, 32, 1, 4, 4), tiny) == []


def test_extended_at_one_token_keeps_only_one_row_block_configs() -> None:
    space = load_space(SPACES / "extended.toml")
    configs = space.enumerate(context(1))
    assert {c.BLOCK_SIZE_M for c in configs} == {16}
    assert {c.GROUP_SIZE_M for c in configs} == {1}
    assert {c.BLOCK_SIZE_N for c in configs} == {16, 32, 64, 128, 256}
    assert {c.num_warps for c in configs} == {2, 4, 8}


# -- enumerate, violations, is_valid ------------------------------------------------


@pytest.mark.parametrize(
    ("file", "M", "gpu"),
    [
        (SPACES / "extended.toml", 1, "NVIDIA_H100_80GB_HBM3"),
        (SPACES / "extended.toml", 64, "NVIDIA_A100-SXM4-80GB"),
        (SPACES / "extended.toml", 4096, "NVIDIA_H200"),
        (DATA / "small.toml", 16, "NVIDIA_A100-SXM4-80GB"),
    ],
)
def test_enumerate_is_filtered_product(file: Path, M: int, gpu: str) -> None:
    space = load_space(file)
    ctx = context(M, KNOWN_GPUS[gpu])
    product = [KernelConfig(*v) for v in itertools.product(*(p.values for p in space.params))]
    expected = [c for c in product if space.is_valid(c, ctx)]
    assert space.enumerate(ctx) == expected
    assert 0 < len(expected) < len(product)


def test_small_space_by_hand() -> None:
    space = load_space(DATA / "small.toml")
    assert space.params[0].values == (16, 32, 64)  # sorted on load
    assert space.raw_size() == 3 * 3 * 1 * 3 * 2 * 3
    smem = 20 * 1024
    ctx = context(32, GpuFacts(shared_mem_per_block=smem, sm_count=1))
    configs = space.enumerate(ctx)
    for c in configs:
        assert (c.BLOCK_SIZE_M + c.BLOCK_SIZE_N) * 64 * 2 * c.num_stages <= smem
        assert c.BLOCK_SIZE_M <= 32
    # (16 + 32) * 64 * 2 * s <= 20480 only for s = 2 and 3; (32 + 32) * 128 * s only s = 2;
    # (16 + 64) * 128 * 2 = 20480 fits; 128-wide N tiles never fit.
    assert sorted({(c.BLOCK_SIZE_M, c.BLOCK_SIZE_N, c.num_stages) for c in configs}) == [
        (16, 32, 2),
        (16, 32, 3),
        (16, 64, 2),
        (32, 32, 2),
    ]
    assert len(configs) == 4 * 3 * 2


def test_violations_lists_values_outside_and_broken_constraints() -> None:
    space = load_space(DATA / "small.toml")
    ctx = context(16)
    assert space.violations(KernelConfig(16, 32, 64, 1, 4, 2), ctx) == []
    assert space.is_valid(KernelConfig(16, 32, 64, 1, 4, 2), ctx)
    outside = KernelConfig(48, 32, 64, 1, 4, 2)
    assert space.violations(outside, ctx) == ["BLOCK_SIZE_M = 48 not in space", "few_rows"]
    assert not space.is_valid(outside, ctx)
    tiny_smem = context(16, GpuFacts(shared_mem_per_block=1024, sm_count=1))
    assert space.violations(KernelConfig(64, 32, 64, 1, 16, 2), tiny_smem) == [
        "num_warps = 16 not in space",
        "smem",
        "few_rows",
    ]


def test_context_must_give_names_the_constraints_use() -> None:
    space = load_space(DATA / "small.toml")
    assert space.context_names == {"dtype_bytes", "smem_per_block", "M"}
    ctx = context()
    del ctx["smem_per_block"]
    with pytest.raises(SpaceError, match="need smem_per_block"):
        space.enumerate(ctx)
    with pytest.raises(SpaceError, match="need smem_per_block"):
        space.is_valid(KernelConfig(16, 32, 64, 1, 4, 2), ctx)
    # A space without constraints needs no context.
    assert len(load_space(SPACES / "vllm-432.toml").enumerate({})) == 432


# -- Optuna encoding ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "encoding", "optuna_name", "low", "high"),
    [
        ((2, 3, 4, 5), "range", "num_stages", 2, 5),
        ((7,), "range", "num_stages", 7, 7),
        ((1, 2), "range", "num_stages", 1, 2),
        ((16, 32, 64, 128, 256), "log2", "log2_num_stages", 4, 8),
        ((1, 2, 4), "log2", "log2_num_stages", 0, 2),
        ((1, 16, 32, 64), "index", "num_stages_index", 0, 3),
        ((16, 64), "index", "num_stages_index", 0, 1),
        ((3, 6, 12), "index", "num_stages_index", 0, 2),
    ],
)
def test_param_encoding(
    values: tuple[int, ...], encoding: str, optuna_name: str, low: int, high: int
) -> None:
    from optuna.distributions import IntDistribution

    param = Param("num_stages", values)
    assert param.encoding == encoding
    assert param.optuna_name == optuna_name
    assert param.distribution == IntDistribution(low, high)
    encoded = [param.encode(v) for v in values]
    assert encoded == sorted(encoded)  # ordinal: the order of values is kept
    assert encoded[0] == low and encoded[-1] == high
    assert [param.decode(e) for e in encoded] == list(values)
    with pytest.raises(SpaceError, match="not in space"):
        param.encode(values[-1] + 1000)
    with pytest.raises(SpaceError, match="outside"):
        param.decode(high + 1)


def test_param_rejects_bad_values() -> None:
    for values in ((), (2, 1), (1, 1), (0, 1), (True,)):
        with pytest.raises(SpaceError):
            Param("num_stages", values)  # type: ignore[arg-type]


def test_space_rejects_params_out_of_order() -> None:
    params = load_space(DATA / "small.toml").params
    with pytest.raises(SpaceError, match="must be BLOCK_SIZE_M"):
        Space("x", FUSED_MOE, params[::-1])


def test_round_trip_every_config_of_vllm_1920() -> None:
    space = load_space(SPACES / "vllm-1920.toml")
    seen = set()
    for config in space.enumerate({}):
        params = space.to_params(config)
        assert space.from_params(params) == config
        seen.add(tuple(params.values()))
    assert len(seen) == 1920
    assert list(params) == [
        "log2_BLOCK_SIZE_M",
        "log2_BLOCK_SIZE_N",
        "log2_BLOCK_SIZE_K",
        "GROUP_SIZE_M_index",
        "log2_num_warps",
        "num_stages",
    ]
    assert space.to_params(KernelConfig(256, 32, 64, 64, 8, 5)) == {
        "log2_BLOCK_SIZE_M": 8,
        "log2_BLOCK_SIZE_N": 5,
        "log2_BLOCK_SIZE_K": 6,
        "GROUP_SIZE_M_index": 3,
        "log2_num_warps": 3,
        "num_stages": 5,
    }


def test_to_params_and_from_params_reject_what_is_not_in_space() -> None:
    space = load_space(SPACES / "vllm-432.toml")
    with pytest.raises(SpaceError, match=r"vllm-432: .*BLOCK_SIZE_M = 256 not in space"):
        space.to_params(KernelConfig(256, 32, 64, 1, 4, 2))
    good = space.to_params(KernelConfig(16, 32, 64, 1, 4, 2))
    with pytest.raises(SpaceError, match="lack num_stages"):
        space.from_params({k: v for k, v in good.items() if k != "num_stages"})
    unknown = r"unknown Optuna param 'num_stage' \(did you mean 'num_stages'\?\)"
    with pytest.raises(SpaceError, match=unknown):
        space.from_params({**good, "num_stage": 3})
    with pytest.raises(SpaceError, match="outside 4..7"):
        space.from_params({**good, "log2_BLOCK_SIZE_M": 8})


def test_distributions() -> None:
    from optuna.distributions import IntDistribution

    space = load_space(SPACES / "vllm-432.toml")
    assert space.distributions() == {
        "log2_BLOCK_SIZE_M": IntDistribution(4, 7),
        "log2_BLOCK_SIZE_N": IntDistribution(5, 7),
        "log2_BLOCK_SIZE_K": IntDistribution(6, 7),
        "GROUP_SIZE_M_index": IntDistribution(0, 2),
        "log2_num_warps": IntDistribution(2, 3),
        "num_stages": IntDistribution(2, 4),
    }


@pytest.mark.parametrize("sampler_name", ["random", "tpe"])
@pytest.mark.parametrize("file", ["vllm-1920.toml", "extended.toml"])
def test_suggest_with_a_real_study(sampler_name: str, file: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / file)
    if sampler_name == "random":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=1)
    else:
        sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=5)
    study = optuna.create_study(sampler=sampler)
    suggested: list[KernelConfig] = []

    def objective(trial: optuna.trial.Trial) -> float:
        config = space.suggest(trial)
        suggested.append(config)
        for p in space.params:
            assert getattr(config, p.name) in p.values
        assert trial.distributions == space.distributions()
        assert space.from_params(trial.params) == config
        # Any smooth objective: favours big N tiles and few stages.
        return -config.BLOCK_SIZE_N + config.num_stages

    study.optimize(objective, n_trials=25)
    assert len(suggested) == 25
    assert len(set(suggested)) > 5
    for trial, config in zip(study.trials, suggested):
        assert space.from_params(trial.params) == config


def test_enqueued_config_is_suggested_first() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / "extended.toml")
    default = vllm_default_config(4096, 64)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(space.to_params(default))
    trial = study.ask()
    assert space.suggest(trial) == default


# -- fingerprint ----------------------------------------------------------------------


def test_fingerprint() -> None:
    small = load_space(DATA / "small.toml").fingerprint()
    assert len(small) == 64 and int(small, 16) >= 0
    assert small == load_space(DATA / "small.toml").fingerprint()
    # Comments, spacing, key order, value spelling, description: same fingerprint.
    assert load_space(DATA / "small_reformatted.toml").fingerprint() == small
    assert load_space(DATA / "small_changed_value.toml").fingerprint() != small
    assert load_space(DATA / "small_changed_constraint.toml").fingerprint() != small
    shipped = {load_space(p).fingerprint() for p in SPACES.glob("*.toml")}
    assert len(shipped) == len(list(SPACES.glob("*.toml")))


def test_fingerprint_ignores_file_name(tmp_path: Path) -> None:
    copy = tmp_path / "renamed.toml"
    copy.write_text((DATA / "small.toml").read_text())
    assert load_space(copy).fingerprint() == load_space(DATA / "small.toml").fingerprint()
    assert load_space(copy).name == "renamed"
    assert load_space(copy).path == copy


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("bad_toml.toml", ["invalid TOML", "line 4"]),
        ("unknown_top_key.toml", ["unknown key 'paramz'", "(did you mean 'params'?)"]),
        (
            "unknown_param.toml",
            ["params.BLOCK_SIZE_NN: unknown param (did you mean 'BLOCK_SIZE_N'?)",
             "params: missing BLOCK_SIZE_N"],
        ),
        ("missing_param.toml", ["params: missing num_stages", "all six keys"]),
        ("not_power_of_two.toml", ["params.BLOCK_SIZE_M = 48 is not a power of two"]),
        ("pow2_bad_end.toml", ["params.BLOCK_SIZE_K.pow2 = [48, 256]: 48 is not a power of two"]),
        (
            "unknown_range_key.toml",
            ["params.BLOCK_SIZE_K.pow: unknown key (did you mean 'pow2'?)", "pow2 = [lo, hi]"],
        ),
        ("range_reversed.toml", ["params.num_stages.range = [6, 1]: lo 6 is greater than hi 1"]),
        ("duplicate_value.toml", ["params.num_stages = [2, 3, 3] lists 3 more than once"]),
        ("wrong_schema.toml", ["schema = 2 is not supported", "schema = 1"]),
        ("missing_schema.toml", ["missing key 'schema'"]),
        (
            "constraint_unknown_name.toml",
            ["[constraints] smem: unknown name 'smem_per_blok' (did you mean 'smem_per_block'?)"],
        ),
        ("constraint_call.toml", ["[constraints] escape: call of", "is not allowed"]),
        ("constraint_not_bool.toml", ["[constraints] half = 'BLOCK_SIZE_M // 2' gives a number"]),
        (
            "two_problems.toml",
            ["params.BLOCK_SIZE_M = 48 is not a power of two", "params.num_warp: unknown param"],
        ),
    ],
)
def test_invalid_files(file: str, expected: list[str]) -> None:
    path = DATA / file
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message  # one line, as the CLI prints it
    assert message.startswith(f"{path}: "), message
    for text in expected:
        assert text in message


def test_every_problem_is_reported() -> None:
    with pytest.raises(SpaceError) as info:
        load_space(DATA / "two_problems.toml")
    # 48, num_warp unknown, num_warps missing: each named with the file, on one line.
    assert str(info.value).count(f"{DATA / 'two_problems.toml'}: ") == 3


def test_missing_file() -> None:
    with pytest.raises(SpaceError, match=r"nope\.toml: cannot read space file"):
        load_space(DATA / "nope.toml")


WHERE = "spaces/x.toml"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (valid_dict(BLOCK_SIZE_M=[]), "params.BLOCK_SIZE_M = [] is empty"),
        (
            valid_dict(GROUP_SIZE_M=[1, "8"]),
            "params.GROUP_SIZE_M = [1, '8'] holds '8', which is not an integer",
        ),
        (valid_dict(GROUP_SIZE_M=[1, 2.0]), "holds 2.0, which is not an integer"),
        (valid_dict(GROUP_SIZE_M=[True]), "holds True, which is not an integer"),
        (
            valid_dict(num_stages=[0, 1]),
            "params.num_stages = [0, 1] holds 0; values must be positive",
        ),
        (valid_dict(num_warps=[4, 64]), "params.num_warps = 64 is more than 32"),
        (valid_dict(num_warps=[3]), "params.num_warps = 3 is not a power of two"),
        (
            valid_dict(BLOCK_SIZE_N={"range": [16, 32]}),
            "params.BLOCK_SIZE_N = 17 is not a power of two",
        ),
        (valid_dict(num_stages=4), "params.num_stages = 4 must be a list of integers or a table"),
        (valid_dict(num_stages="1..4"), "params.num_stages = '1..4' must be a list"),
        (valid_dict(num_stages={}), "params.num_stages = {} must hold exactly one of pow2"),
        (
            valid_dict(num_stages={"range": [1, 2], "pow2": [1, 2]}),
            "must hold exactly one of pow2 = [lo, hi], range = [lo, hi]",
        ),
        (
            valid_dict(num_stages={"range": [1, 2, 3]}),
            "params.num_stages.range = [1, 2, 3] must be [lo, hi]",
        ),
        (valid_dict(num_stages={"range": 3}), "params.num_stages.range = 3 must be [lo, hi]"),
        (valid_dict(num_stages={"range": [0, 3]}), "two positive integers"),
        (valid_dict(num_stages={"range": [1, 100000]}), "holds 100000 values; at most 1024"),
        (
            valid_dict(BLOCK_SIZE_K={"pow2": [256, 32]}),
            "params.BLOCK_SIZE_K.pow2 = [256, 32]: lo 256 is greater than hi 32",
        ),
        (
            valid_dict(GROUP_SIZE_M={"pow2": [1, 12]}),
            "params.GROUP_SIZE_M.pow2 = [1, 12]: 12 is not a power of two",
        ),
        ({"schema": 1}, "missing table [params]"),
        ({"schema": 1, "params": [1, 2]}, "params = [1, 2] must be a table"),
        ({**valid_dict(), "schema": True}, "schema = True is not supported"),
        ({**valid_dict(), "schema": "1"}, "schema = '1' is not supported"),
        ({**valid_dict(), "schema": 1.0}, "schema = 1.0 is not supported"),
        ({**valid_dict(), "description": 3}, "description = 3 must be a string"),
        ({**valid_dict(), "constraints": ["M > 1"]}, "constraints = ['M > 1'] must be a table"),
        ({**valid_dict(), "constraints": {"c": 3}}, "[constraints] c = 3 must be a string"),
        ({**valid_dict(), "constraints": {"c": ""}}, "[constraints] c: the expression is empty"),
        (
            {**valid_dict(), "constraints": {"c": "M >"}},
            "[constraints] c: 'M >' is not a valid expression",
        ),
        (
            {**valid_dict(), "constraints": {"c": "M.x > 1"}},
            "[constraints] c: attribute access 'M.x'",
        ),
        ({**valid_dict(), "constraints": {"c": "E[0] > 1"}}, "[constraints] c: subscript"),
        ({**valid_dict(), "constraints": {"c": "'a' < 'b'"}}, "[constraints] c: string literal"),
        (
            {**valid_dict(), "descripton": "x"},
            "unknown key 'descripton' (did you mean 'description'?)",
        ),
        (
            {**valid_dict(), "constraint": {}},
            "unknown key 'constraint' (did you mean 'constraints'?)",
        ),
        ({**valid_dict(), "zzz": {}}, "unknown key 'zzz'; a space file holds schema, description"),
        (
            valid_dict(block_size_m=[16]),
            "params.block_size_m: unknown param (did you mean 'BLOCK_SIZE_M'?)",
        ),
    ],
)
def test_space_from_dict_rules(data: dict[str, object], expected: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_dict(data, where=WHERE, name="x")
    message = str(info.value)
    assert message.startswith(f"{WHERE}: ")
    assert expected in message


def test_space_from_dict_accepts_a_valid_space() -> None:
    space = space_from_dict(
        {**valid_dict(num_stages={"range": [1, 3]}), "constraints": {"c": "num_stages < M"}},
        where=WHERE,
        name="x",
    )
    assert space.name == "x" and space.path is None
    assert space.params[-1].values == (1, 2, 3)
    assert [c.name for c in space.constraints] == ["c"]
    assert [c.num_stages for c in space.enumerate({"M": 3})] == [1, 2] * 4


def test_loading_and_enumerating_import_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from searcher.study.space import load_space\n"
        f"s = load_space({str(SPACES / 'extended.toml')!r})\n"
        "ctx = dict(E=64, N=1408, hidden=2048, top_k=6, dtype_bytes=2, M=64,"
        " smem_per_block=232448, sm_count=132, block_n=0, block_k=0, fp8=0, a_bytes=2,"
        " b_bytes=2)\n"
        "assert s.enumerate(ctx) and s.fingerprint() and s.to_params(s.enumerate(ctx)[0])\n"
        "heavy = [m for m in ('optuna', 'torch', 'triton', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- the space's kernel --------------------------------------------------------------


def test_a_space_is_the_kernels() -> None:
    space = space_from_dict(valid_dict(), where=WHERE, name="x")
    assert space.kernel is FUSED_MOE
    assert space_from_dict({**valid_dict(), "kernel": "fused_moe"}, where=WHERE, name="x",
                           kernel=FUSED_MOE).kernel is FUSED_MOE
    assert isinstance(space.enumerate({})[0], KernelConfig)


def test_a_param_outside_the_kernels_config_keys_is_refused() -> None:
    with pytest.raises(SpaceError) as info:
        space_from_dict(valid_dict(SPLIT_K=[1]), where=WHERE, name="x", kernel=FUSED_MOE)
    message = str(info.value)
    assert message.startswith(f"{WHERE}: params.SPLIT_K: unknown param")
    assert "the params of kernel fused_moe are BLOCK_SIZE_M, BLOCK_SIZE_N" in message


@pytest.mark.parametrize(("kernel", "expected"), [
    ("fused_mo", "unknown kernel 'fused_mo' (did you mean 'fused_moe'?); must be one of: fused_moe"),
    (3, "kernel = 3 must be a string naming a kernel"),
])
def test_a_space_naming_an_unknown_kernel_is_refused(kernel: object, expected: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_dict({**valid_dict(), "kernel": kernel}, where=WHERE, name="x")
    assert str(info.value).startswith(f"{WHERE}: ")
    assert expected in str(info.value)


def test_a_space_of_another_kernel_than_the_studys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('kernel = "other_kernel"\n' + (DATA / "small.toml").read_text())
    with pytest.raises(SpaceError, match="kernel = 'other_kernel': the space is for another "
                       "kernel than the study's \\('fused_moe'\\)"):
        load_space(path, FUSED_MOE)
