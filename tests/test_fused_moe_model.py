"""searcher/kernels/fused_moe/model.py: model configs as the fused-MoE problem of one rank.

The fixtures under tests/data/models/ were written here from the models' public facts
(only the keys that matter and a few distractors); each case checks the layer and vLLM's
file name on an H200 under several tp/ep.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searcher.errors import SpecError
from searcher.kernels.fused_moe import FUSED_MOE
from searcher.kernels.fused_moe.model import layer_from_config
from searcher.kernels.fused_moe.problem import Shape

MODELS = Path(__file__).parent / "data" / "models"
BLOCK = (128, 128)

# (model folder, tp, ep, E, N, hidden, top_k, dtype, block_shape, per_channel, file suffix)
CASES = [
    ("deepseek-v3", 8, 1, 256, 256, 7168, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("deepseek-v3", 1, 8, 32, 2048, 7168, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("deepseek-v3", 8, 64, 4, 2048, 7168, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("deepseek-v2-lite", 1, 1, 64, 1408, 2048, 6, "bf16", None, ""),
    ("deepseek-v2-lite", 2, 1, 64, 704, 2048, 6, "bf16", None, ""),
    ("kimi-vl-a3b-instruct", 1, 1, 64, 1408, 2048, 6, "bf16", None, ""),
    ("kimi-vl-a3b-instruct", 4, 1, 64, 352, 2048, 6, "bf16", None, ""),
    ("kimi-k2-instruct", 8, 1, 384, 256, 7168, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("kimi-k2-instruct", 16, 16, 24, 2048, 7168, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("mixtral-8x7b-instruct-v0.1", 2, 1, 8, 7168, 4096, 2, "bf16", None, ""),
    ("mixtral-8x7b-instruct-v0.1", 1, 8, 1, 14336, 4096, 2, "bf16", None, ""),
    ("qwen3-30b-a3b", 1, 1, 128, 768, 2048, 8, "bf16", None, ""),
    ("qwen3-30b-a3b", 4, 1, 128, 192, 2048, 8, "bf16", None, ""),
    ("qwen3-235b-a22b", 8, 1, 128, 192, 4096, 8, "bf16", None, ""),
    ("qwen3-235b-a22b-fp8", 4, 1, 128, 384, 4096, 8, "fp8_w8a8", BLOCK, ",dtype=fp8_w8a8,block_shape=[128,128]"),
    ("qwen2-57b-a14b", 2, 1, 64, 1280, 3584, 8, "bf16", None, ""),
    ("olmoe-1b-7b-0924", 1, 1, 64, 1024, 2048, 8, "bf16", None, ""),
    ("glm-4.5-air", 4, 1, 128, 352, 4096, 8, "bf16", None, ""),
    ("llama-4-scout-17b-16e-instruct", 8, 1, 16, 1024, 5120, 1, "bf16", None, ""),
    ("llama-4-scout-17b-16e-instruct", 1, 16, 1, 8192, 5120, 1, "bf16", None, ""),
    ("qwen3-vl-30b-a3b-instruct", 2, 1, 128, 384, 2048, 8, "bf16", None, ""),
]


def _config(name: str) -> dict:
    return json.loads((MODELS / name / "config.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-tp{c[1]}-ep{c[2]}")
def test_model_layers_and_vllm_file_names(case):
    name, tp, ep, E, N, hidden, top_k, dtype, block, suffix = case
    layer = layer_from_config(_config(name), tp=tp, ep=ep)
    assert layer.shape == Shape(E=E, N=N, hidden=hidden, top_k=top_k, dtype=dtype,
                                block_shape=block, ep=ep)
    assert FUSED_MOE.file_name(layer.shape, "NVIDIA_H200") == \
        f"E={E},N={N},device_name=NVIDIA_H200{suffix}.json"


def test_at_least_twelve_fixtures_and_all_map():
    names = sorted(p.name for p in MODELS.iterdir())
    assert len(names) >= 12
    assert {c[0] for c in CASES} == set(names)


def test_shared_experts_are_left_out_with_a_note():
    for name, key in (("deepseek-v3", "n_shared_experts 1"),
                      ("qwen2-57b-a14b", "shared_expert_intermediate_size 20480")):
        notes = " ".join(layer_from_config(_config(name)).notes)
        assert key in notes and "routed experts only" in notes
    assert layer_from_config(_config("mixtral-8x7b-instruct-v0.1")).notes == ()


def test_names_tags():
    assert layer_from_config(_config("deepseek-v3"), tp=8).tag == "fp8-block128"
    assert layer_from_config(_config("deepseek-v3"), tp=8).parallel == "tp8"
    assert layer_from_config(_config("deepseek-v3"), tp=8, ep=8).parallel == "ep8"
    assert layer_from_config(_config("qwen3-30b-a3b")).tag == "bf16"


def _with(name: str, **changes) -> dict:
    config = _config(name)
    config.update(changes)
    return config


def _ct(strategy: str, **weights) -> dict:
    return {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "type": "float", "strategy": strategy, **weights},
        "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                              "dynamic": True}}}}


@pytest.mark.parametrize("quant,dtype,block,per_channel", [
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8_w8a8", None, False),
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8_w8a8", BLOCK, False),
    (_ct("channel"), "fp8_w8a8", None, True),
    (_ct("tensor"), "fp8_w8a8", None, False),
    (_ct("block", block_structure=[128, 128]), "fp8_w8a8", BLOCK, False),
    ({"quant_method": "experts_int8"}, "int8_w8a16", None, False),
])
def test_quantization_mapping(quant, dtype, block, per_channel):
    shape = layer_from_config(_with("qwen3-30b-a3b", quantization_config=quant)).shape
    assert (shape.dtype, shape.block_shape, shape.per_channel) == (dtype, block, per_channel)


def test_explicit_dtype():
    assert layer_from_config(_config("deepseek-v3"), tp=8, dtype="bf16").shape.dtype == "bf16"
    fp8 = layer_from_config(_config("qwen3-30b-a3b"), dtype="fp8_w8a8").shape
    assert fp8.scheme == "per_tensor"
    assert layer_from_config(_with("qwen3-30b-a3b", torch_dtype="float16")).shape.dtype == "fp16"


@pytest.mark.parametrize("config,kw,words", [
    ({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008}, {},
     ["'llama'", "n_routed_experts", "hidden_size, intermediate_size"]),
    ({"model_type": "gpt_oss", "num_local_experts": 32, "num_experts_per_tok": 4,
      "hidden_size": 2880, "intermediate_size": 2880}, {}, ["gpt_oss", "biases"]),
    ({"model_type": "x", "num_experts": 8, "hidden_size": 64, "num_experts_per_tok": 2,
      "intermediate_size": 128, "hidden_act": "gelu"}, {}, ["hidden_act = 'gelu'"]),
    ({"model_type": "x", "num_experts": 8, "hidden_size": 64}, {},
     ["num_experts", "moe_intermediate_size or intermediate_size", "num_experts_per_tok"]),
    ("deepseek-v2-lite", {"tp": 3}, ["--tp 3", "1408"]),
    ("deepseek-v2-lite", {"ep": 5}, ["--ep 5", "64 experts"]),
    ("deepseek-v2-lite", {"ep": 4, "tp": 8}, ["--ep 4", "multiple of --tp"]),
    ("deepseek-v2-lite", {"dtype": "int4"}, ["--dtype 'int4'"]),
])
def test_refusals_name_what_is_wrong(config, kw, words):
    if isinstance(config, str):
        config = _config(config)
    with pytest.raises(SpecError) as info:
        layer_from_config(config, **kw)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("quant,word", [
    ({"quant_method": "awq", "bits": 4}, "'awq'"),
    ({"quant_method": "gptq", "bits": 4}, "'gptq'"),
    ({"quant_method": "mxfp4"}, "'mxfp4'"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "'modelopt'"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {
        "weights": {"num_bits": 4, "type": "int", "strategy": "group"}}}}, "int 4-bit"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {
        "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
        "input_activations": None}}}, "weight-only"),
])
def test_unsupported_quantization_is_named(quant, word):
    with pytest.raises(SpecError, match="cannot tune") as info:
        layer_from_config(_with("qwen3-30b-a3b", quantization_config=quant))
    assert word in str(info.value)


def test_top_k_above_e_needs_ep():
    with pytest.raises(SpecError, match="set ep"):
        Shape(E=4, N=64, hidden=64, top_k=8)
    shape = Shape(E=4, N=64, hidden=64, top_k=8, ep=2)
    assert shape.label().endswith(",ep=2") and shape.routed_experts == 8
    with pytest.raises(SpecError, match="E \\* ep"):
        Shape(E=2, N=64, hidden=64, top_k=8, ep=2)
    assert FUSED_MOE.parse_problem({"E": 4, "N": 64, "hidden": 64, "top_k": 8, "ep": 2}) == shape
    assert FUSED_MOE.parse_problem(FUSED_MOE.problem_table(shape)) == shape
