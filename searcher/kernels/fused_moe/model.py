"""A model's ``config.json`` as the fused-MoE problem vLLM runs on one GPU.

What is read (facts of vLLM 0.33.0's loaders, see ../shared/FUSED_MOE.md, "Models and
parallelism"):

* The MoE settings live at the top level or in a nested table (``text_config``,
  ``language_config``, ``llm_config``, ``thinker_config.text_config``, ...): the first
  table, breadth first, that holds an experts key is taken, so a new multimodal wrapper
  needs no code. Experts: ``n_routed_experts`` (DeepSeek V2/V3, Kimi, GLM-4.5 MoE),
  ``num_experts`` (Qwen2/3-MoE, OLMoE), ``num_local_experts`` (Mixtral, Llama 4);
  intermediate size: ``moe_intermediate_size`` where present, else ``intermediate_size``;
  ``num_experts_per_tok`` (top_k); ``hidden_size``.
* Shared experts (DeepSeek's ``n_shared_experts``, Qwen2-MoE's
  ``shared_expert_intermediate_size``) are not part of vLLM's fused-MoE files: they run
  as a separate dense MLP. searcher tunes the routed experts only and says so in a note.
* Experts searcher's kernel does not compute are refused with the reason: gpt-oss
  (expert biases and a clamped SwiGLU) and any ``hidden_act`` other than silu/swiglu.

Sharding (vLLM's rules, as facts):

* Tensor parallelism ``tp``: N = intermediate / tp (exactly; vLLM's
  ``shard_intermediate_size = 2 * intermediate // tp``); E, hidden and top_k unchanged.
* Expert parallelism ``ep``: vLLM shards the experts over the ep = tp x dp ranks of the
  layer and does not split N; each rank holds E / ep whole experts. The file's E is that
  local count and top_k stays the model's, so top_k > E happens (Kimi K2 at ep=64: 6
  local experts, top_k 8). The problem then carries ``ep``: the router picks top_k of the
  E x ep global experts and only this rank's E are computed (see
  :class:`~searcher.kernels.fused_moe.problem.Shape`). With ep > 1, tp only says how the
  ranks are grouped for attention: ep must be a multiple of tp, and N is not divided.

Quantization under ``dtype = "auto"`` (the checkpoint's ``quantization_config``):
``quant_method = "fp8"`` with ``weight_block_size`` -> block fp8, without -> per-tensor fp8;
compressed-tensors with an fp8 weight scheme (``type = "float"``, 8 bits, with fp8
input activations): ``strategy = "tensor"`` per-tensor, ``"channel"`` per-channel,
``"block"`` with ``block_structure`` block-wise; ``experts_int8`` -> int8_w8a16;
no ``quantization_config``: ``torch_dtype`` (or ``dtype``) gives bf16/fp16. Anything
else (awq, gptq, mxfp4, nvfp4, int4 compressed-tensors, ...) runs other kernels in vLLM
and is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from searcher.errors import SpecError
from searcher.kernels.fused_moe.problem import QUANTIZED_DTYPES, Shape

__all__ = ["ModelLayer", "layer_from_config", "find_moe_table", "EXPERT_KEYS", "DTYPE_CHOICES"]

#: Keys naming the routed expert count, in the order they are tried.
EXPERT_KEYS = ("n_routed_experts", "num_experts", "num_local_experts")
#: ``--dtype`` values: ``auto`` (the checkpoint's) or one the kernel tunes.
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp8_w8a8", "int8_w8a16")
#: Expert activations the kernel computes (SiLU-and-mul).
_ACTS = ("silu", "swiglu")
#: model_type values whose experts are not vLLM's plain fused MoE, with the reason.
_REFUSED_TYPES = {
    "gpt_oss": "gpt-oss experts have biases and a clamped SwiGLU (vLLM runs them with "
               "another kernel)",
}
#: A checkpoint's torch_dtype as the layer's dtype under ``--dtype auto``. float32
#: checkpoints (OLMoE's) are served in bf16 by vLLM's ``dtype="auto"`` on GPUs that have
#: it (all searcher targets), so they are tuned as bf16.
_TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "bf16",
                 "float": "bf16"}


@dataclass(frozen=True)
class ModelLayer:
    """The fused-MoE layer of a model on one rank, and how it was derived.

    Attributes:
        shape: the layer's problem (E local, N per partition).
        tag: the dtype part of a study name: ``bf16``, ``fp16``, ``fp8``, ``fp8-channel``,
            ``fp8-block128`` (``fp8-block128x64`` if not square), ``int8w8a16``.
        parallel: the parallelism part of a study name (``tp8``, or ``ep8`` when experts
            are sharded, since tp then does not change the layer).
        facts: lines saying what was read and how it was sharded (for a TOML header).
        notes: what the user should know (shared experts left out, ...).
    """

    shape: Shape
    tag: str
    parallel: str
    facts: tuple[str, ...]
    notes: tuple[str, ...]


def find_moe_table(config: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The table holding the MoE keys, breadth first from the top level, and its path
    (``""`` for the top level, ``"text_config"``, ``"thinker_config.text_config"``)."""
    queue: list[tuple[str, Mapping[str, Any]]] = [("", config)]
    while queue:
        path, table = queue.pop(0)
        if any(k in table for k in EXPERT_KEYS):
            return path, table
        for key, value in table.items():
            if isinstance(value, Mapping) and key != "quantization_config":
                queue.append((f"{path}.{key}" if path else key, value))
    return None


def _int(table: Mapping[str, Any], key: str, where: str) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}{key} = {value!r} must be a positive integer")
    return value


def _checkpoint_dtype(config: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    for source in (table, config):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if isinstance(value, str):
                if value in _TORCH_DTYPES:
                    return _TORCH_DTYPES[value]
                raise SpecError(f"{key} = {value!r}: searcher tunes bfloat16, float16 and "
                                "float32 (as bf16) checkpoints; pass --dtype")
    return "bf16"  # vLLM's default for a config that names none


def _quant(config: Mapping[str, Any], table: Mapping[str, Any]) -> tuple[
        str, tuple[int, int] | None, bool] | None:
    """(dtype, block_shape, per_channel) of the checkpoint's quantization, or None."""
    q = table.get("quantization_config") or config.get("quantization_config")
    if q is None:
        return None
    if not isinstance(q, Mapping):
        raise SpecError(f"quantization_config = {q!r} must be a table")
    method = q.get("quant_method")
    if method == "fp8":
        block = q.get("weight_block_size")
        if block is None:
            return "fp8_w8a8", None, False
        return "fp8_w8a8", _block(block, "quantization_config.weight_block_size"), False
    if method == "experts_int8":
        return "int8_w8a16", None, False
    if method == "compressed-tensors":
        return _compressed_tensors(q)
    raise SpecError(f"quantization_config.quant_method = {method!r} is a scheme searcher "
                    "cannot tune (vLLM runs it with another MoE kernel); searcher tunes fp8 "
                    "(per-tensor, per-channel, block), experts_int8 and unquantized "
                    "checkpoints; pass --dtype bf16 to tune the unquantized layer instead")


def _block(value: Any, where: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise SpecError(f"{where} = {value!r} must be two integers [block_n, block_k]")
    return value[0], value[1]


def _compressed_tensors(q: Mapping[str, Any]) -> tuple[str, tuple[int, int] | None, bool]:
    groups = q.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise SpecError("quantization_config (compressed-tensors) has no config_groups")
    name, group = next(iter(groups.items()))
    weights = group.get("weights") if isinstance(group, Mapping) else None
    acts = group.get("input_activations") if isinstance(group, Mapping) else None
    if not isinstance(weights, Mapping):
        raise SpecError(f"quantization_config.config_groups.{name}.weights is missing")
    kind, bits, strategy = weights.get("type"), weights.get("num_bits"), weights.get("strategy")
    scheme = f"compressed-tensors {kind} {bits}-bit {strategy}"
    if kind != "float" or bits != 8:
        raise SpecError(f"quantization_config: {scheme} weights are a scheme searcher cannot "
                        "tune (vLLM runs them with another MoE kernel); searcher tunes fp8 "
                        "compressed-tensors schemes (strategy tensor, channel or block)")
    if not isinstance(acts, Mapping) or acts.get("type") != "float" or acts.get("num_bits") != 8:
        raise SpecError(f"quantization_config: {scheme} weights with activations {acts!r} are "
                        "fp8 weight-only (w8a16), a scheme searcher cannot tune")
    where = f"quantization_config.config_groups.{name}.weights"
    if strategy == "tensor":
        return "fp8_w8a8", None, False
    if strategy == "channel":
        return "fp8_w8a8", None, True
    if strategy == "block":
        return "fp8_w8a8", _block(weights.get("block_structure"), f"{where}.block_structure"), False
    raise SpecError(f"{where}.strategy = {strategy!r} is not one searcher tunes for fp8 "
                    "(tensor, channel or block)")


def _tag(shape: Shape) -> str:
    if shape.dtype == "int8_w8a16":
        return "int8w8a16"
    if shape.dtype != "fp8_w8a8":
        return shape.dtype
    if shape.block_shape is not None:
        bn, bk = shape.block_shape
        return f"fp8-block{bn}" if bn == bk else f"fp8-block{bn}x{bk}"
    return "fp8-channel" if shape.per_channel else "fp8"


def layer_from_config(config: Mapping[str, Any], tp: int = 1, ep: int = 1,
                      dtype: str = "auto") -> ModelLayer:
    """The fused-MoE layer one rank of ``config``'s model runs under tp/ep and dtype.

    Args:
        config: the parsed ``config.json``.
        tp: tensor-parallel size; divides the intermediate size unless ``ep > 1``.
        ep: expert-parallel size (vLLM's tp x dp with expert parallelism on); divides E.
        dtype: ``auto`` (the checkpoint's quantization or dtype) or one of
            :data:`DTYPE_CHOICES`. An explicit fp8_w8a8 on a checkpoint that is not fp8
            is per-tensor (vLLM's online ``--quantization fp8``).

    Raises:
        SpecError: no MoE keys (naming the keys found and the ones needed), a model whose
            experts the kernel does not compute, a tp/ep that does not divide, or a
            quantization scheme searcher cannot tune.
    """
    for name, value in (("--tp", tp), ("--ep", ep)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{name} {value!r} must be a positive integer")
    if dtype not in DTYPE_CHOICES:
        raise SpecError(f"--dtype {dtype!r} must be one of: {', '.join(DTYPE_CHOICES)}")
    model_type = config.get("model_type")
    archs = config.get("architectures")
    fallback = (f"{archs[0]} (no model_type)" if isinstance(archs, list) and archs
                and isinstance(archs[0], str) else "a config without model_type")

    def kind(mt: Any) -> str:
        return f"model_type {mt!r}" if mt else fallback

    found = find_moe_table(config)
    if found is None:
        keys = sorted(k for k in config if not isinstance(config[k], Mapping))
        raise SpecError(
            f"{kind(model_type)}: no mixture-of-experts settings found (none of "
            f"{', '.join(EXPERT_KEYS)} at the top level or in a nested table); searcher needs "
            f"an experts key, moe_intermediate_size or intermediate_size, num_experts_per_tok "
            f"and hidden_size; the config has: {', '.join(keys) or 'no keys'}")
    path, table = found
    where = f"{path}." if path else ""
    inner_type = table.get("model_type", model_type)
    for mt in (model_type, inner_type):
        if mt in _REFUSED_TYPES:
            raise SpecError(f"{kind(mt)}: {_REFUSED_TYPES[mt]}; searcher's kernel "
                            "computes plain SiLU-and-mul experts without biases")
    act = table.get("hidden_act", table.get("hidden_activation", "silu"))
    if act not in _ACTS:
        raise SpecError(f"{where}hidden_act = {act!r}: searcher's kernel computes "
                        f"SiLU-and-mul experts ({' or '.join(_ACTS)}) only")
    expert_key = next(k for k in EXPERT_KEYS if k in table)
    missing = [k for k in ("num_experts_per_tok", "hidden_size") if k not in table]
    inter_key = next((k for k in ("moe_intermediate_size", "intermediate_size") if k in table),
                     None)
    if inter_key is None:
        missing.insert(0, "moe_intermediate_size or intermediate_size")
    if missing:
        raise SpecError(f"{kind(inner_type)}: {where or 'the top level'} has "
                        f"{expert_key} but not {', '.join(missing)}; the config has: "
                        f"{', '.join(sorted(table))}")
    E = _int(table, expert_key, where)
    inter = _int(table, inter_key, where)  # type: ignore[arg-type]
    top_k = _int(table, "num_experts_per_tok", where)
    hidden = _int(table, "hidden_size", where)

    facts = [f"{kind(inner_type)} ({where or 'top level'}): {expert_key} {E}, "
             f"{inter_key} {inter}, num_experts_per_tok {top_k}, hidden_size {hidden}"]
    if ep > 1:
        if ep % tp:
            raise SpecError(f"--ep {ep} with --tp {tp}: vLLM's expert-parallel size is "
                            "tp x dp, so --ep must be a multiple of --tp")
        if E % ep:
            raise SpecError(f"--ep {ep} does not divide the {E} experts ({where}{expert_key}); "
                            "each rank must hold E / ep whole experts")
        local, N, parallel = E // ep, inter, f"ep{ep}"
        facts.append(f"expert parallelism ep={ep}: E = {E} / {ep} = {local} local expert{'s' if local != 1 else ''}, "
                     f"N = {inter} (not divided), top_k {top_k} of the {E} global experts")
    else:
        if inter % tp:
            raise SpecError(f"--tp {tp} does not divide the intermediate size {inter} "
                            f"({where}{inter_key}); vLLM needs N = {inter} / tp exactly")
        local, N, parallel = E, inter // tp, f"tp{tp}"
        facts.append(f"tensor parallelism tp={tp}: N = {inter} / {tp} = {N}; E, hidden and "
                     "top_k unchanged")

    quant = _quant(config, table)
    if dtype == "auto":
        if quant is not None:
            qdtype, block, per_channel = quant
        else:
            qdtype, block, per_channel = _checkpoint_dtype(config, table), None, False
    elif quant is not None and quant[0] == dtype:
        qdtype, block, per_channel = quant
    else:
        qdtype, block, per_channel = dtype, None, False
    try:
        shape = Shape(E=local, N=N, hidden=hidden, top_k=top_k, dtype=qdtype,
                      block_shape=block, per_channel=per_channel, ep=ep)
    except SpecError as exc:
        raise SpecError(f"{kind(inner_type)}: {exc}") from None
    facts.append(f"dtype {qdtype}" + (f", scheme {shape.scheme}" if shape.quantized else "")
                 + (" (from the checkpoint)" if dtype == "auto" else " (--dtype)"))

    notes: list[str] = []
    shared = [f"{k} {table[k]}" for k in ("n_shared_experts", "shared_expert_intermediate_size",
                                          "num_shared_experts") if table.get(k)]
    if shared:
        notes.append(f"the model's shared experts ({', '.join(shared)}) are not part of "
                     "vLLM's fused-MoE layer (they run as a dense MLP): searcher tunes the "
                     "routed experts only")
    if top_k > local:
        notes.append(f"top_k {top_k} > {local} local expert{'s' if local != 1 else ''}: each token routes to top_k of "
                     f"the {E} global experts, of which only this rank's are computed")
    return ModelLayer(shape=shape, tag=_tag(shape), parallel=parallel, facts=tuple(facts),
                      notes=tuple(notes))


def slug(name: str) -> str:
    """A model name as a study-name part: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.") or "model"


def is_quantized(shape: Shape) -> bool:
    return shape.dtype in QUANTIZED_DTYPES
