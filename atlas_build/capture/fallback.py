"""Forward-hook fallback for models whose attention does not go through transformers' `AttentionInterface`
(MPNet, GPT-Neo, DeBERTa, ... in transformers 5).

Query/key/value are taken from the outputs of the attention block's separate q/k/v projections (found by name, a
table of data below) and the probabilities from the model's own ``output_attentions``. The scaling is estimated from
those probabilities (least squares of row-centred log p against q·k, snapped to 1/√d or 1; 1/√d when no factor
fits); the probe then marks
``has_position_bias`` if softmax(q·kᵀ·scaling + mask) does not reproduce them (relative bias, rotary applied after
the projection, ...). Fused qkv projections are not supported.
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
PLAN_ATTR = "_atlas_hook_plan"


@dataclass
class HookPlan:
    """Per layer: the attention block and its q, k, v projections; plus the head count and the scaling."""

    blocks: list[tuple[nn.Module, nn.Linear, nn.Linear, nn.Linear]]
    num_heads: int
    num_kv_heads: int
    scaling: float | None = None  # set by the probe


def _child(module: nn.Module, names: tuple[str, ...]) -> nn.Linear | None:
    for n in names:
        c = getattr(module, n, None)
        if isinstance(c, nn.Linear):
            return c
    return None


def find_plan(model: nn.Module, config: Any) -> HookPlan | None:
    """Locate one q/k/v projection triple per layer; None unless there is exactly one per configured layer."""
    blocks = []
    for m in model.modules():
        q, k, v = (_child(m, PROJECTION_NAMES[x]) for x in "qkv")
        if q is not None and k is not None and v is not None:
            blocks.append((m, q, k, v))
    heads = getattr(config, "num_attention_heads", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not blocks or not isinstance(heads, int) or len(blocks) != layers:
        return None
    kv = getattr(config, "num_key_value_heads", None) or heads
    if blocks[0][1].out_features % heads or blocks[0][2].out_features % kv:
        return None
    return HookPlan(blocks, heads, kv)


def attach(model: nn.Module, plan: HookPlan) -> None:
    setattr(model, PLAN_ATTR, plan)


def plan_of(model: nn.Module) -> HookPlan | None:
    return getattr(model, PLAN_ATTR, None)


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


def estimate_scaling(calls: list[hook.AttentionCall], causal: bool) -> float:
    """Least-squares factor s in log p_ij = s·q_i·k_j + c_i over allowed (i, j); snapped to 1/√d or 1 when close.

    If no single factor reproduces the probabilities (additive score terms), the 1/√d convention is returned."""
    from .facts import recompute

    num = den = 0.0
    for c in calls:
        q, k, p = c.query[0].double(), c.key[0].double(), c.weights[0].double()
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        dots = q @ k.transpose(-1, -2)
        T = dots.shape[-1]
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool)) if causal else torch.ones(T, T, dtype=torch.bool)
        allowed = allowed & (p > 1e-30)
        w = allowed.double()
        cnt = w.sum(-1, keepdim=True).clamp(min=1)
        logp = torch.where(allowed, p.clamp(min=1e-300).log(), 0.0)
        x = torch.where(allowed, dots - (dots * w).sum(-1, keepdim=True) / cnt, 0.0)
        y = torch.where(allowed, logp - (logp * w).sum(-1, keepdim=True) / cnt, 0.0)
        num += float((x * y).sum())
        den += float((x * x).sum())
    default = calls[0].query.shape[-1] ** -0.5
    s = num / den if den > 0 else default
    for snap in (default, 1.0):
        if abs(s - snap) <= 1e-3 * snap:
            s = snap
    exact = all((recompute(c.query, c.key, s, causal) - c.weights.double()).abs().max().item() <= 1e-4
                for c in calls)
    return s if exact else default  # extra score terms: the fit is biased, keep the 1/√d convention
