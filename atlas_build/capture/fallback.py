"""Forward-hook fallback for models whose attention does not go through transformers' `AttentionInterface`
(MPNet, GPT-Neo, DeBERTa, ... in transformers 5).

Query/key/value are taken from the outputs of the attention block's separate q/k/v projections (found by name, a
table of data below) and the probabilities from the model's own ``output_attentions``. The scaling is estimated from
those probabilities by the probe (`attention_math.estimate_scaling`), which then marks ``has_position_bias`` if
softmax(q·kᵀ·scaling + mask) does not reproduce them (relative bias, rotary applied after the projection, ...).
Fused qkv projections are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import hook

PROJECTION_NAMES: dict[str, tuple[str, ...]] = {
    "q": ("q_proj", "query", "q", "q_lin", "query_proj"),
    "k": ("k_proj", "key", "k", "k_lin", "key_proj"),
    "v": ("v_proj", "value", "v", "v_lin", "value_proj"),
}


@dataclass(frozen=True)
class HookPlan:
    """Per layer: the attention block and its q, k, v projections; plus the head count and the scaling."""

    blocks: tuple[tuple[nn.Module, nn.Linear, nn.Linear, nn.Linear], ...]
    num_heads: int
    num_kv_heads: int
    scaling: float | None = None  # None: 1/√d (until the probe has estimated it)


def find_linear(module: nn.Module, names: tuple[str, ...]) -> nn.Linear | None:
    for n in names:
        c = getattr(module, n, None)
        if isinstance(c, nn.Linear):
            return c
    return None


def find_plan(model: nn.Module, config: Any) -> HookPlan | None:
    """Locate one q/k/v projection triple per layer; None unless there is exactly one per configured layer."""
    blocks = []
    for m in model.modules():
        q, k, v = (find_linear(m, PROJECTION_NAMES[x]) for x in "qkv")
        if q is not None and k is not None and v is not None:
            blocks.append((m, q, k, v))
    heads = getattr(config, "num_attention_heads", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not blocks or not isinstance(heads, int) or len(blocks) != layers:
        return None
    kv = getattr(config, "num_key_value_heads", None) or heads
    if blocks[0][1].out_features % heads or blocks[0][2].out_features % kv:
        return None
    return HookPlan(tuple(blocks), heads, kv)


def hooked_forward(model: nn.Module, plan: HookPlan, recorder: hook.Recorder, **inputs: Any) -> Any:
    """One forward pass with hooks on the projections and ``output_attentions``; reports one call per layer."""
    outs: dict[int, torch.Tensor] = {}
    handles = []
    for block in plan.blocks:
        for lin in block[1:]:
            handles.append(lin.register_forward_hook(lambda mod, _i, out: outs.__setitem__(id(mod), out)))
    try:
        result = model(**inputs, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    attentions = result.attentions
    for layer, (block, ql, kl, vl) in enumerate(plan.blocks):
        q, k, v = outs[id(ql)], outs[id(kl)], outs[id(vl)]
        B, T = q.shape[:2]
        q = q.view(B, T, plan.num_heads, -1).transpose(1, 2)
        k = k.view(B, T, plan.num_kv_heads, -1).transpose(1, 2)
        v = v.view(B, T, plan.num_kv_heads, -1).transpose(1, 2)
        scaling = plan.scaling if plan.scaling is not None else q.shape[-1] ** -0.5
        recorder(hook.AttentionCall(layer, block, q, k, v, attentions[layer], scaling, None))
    return result
