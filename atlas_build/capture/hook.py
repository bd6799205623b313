"""The capturing attention function, registered in transformers' `AttentionInterface`.

Every modern transformers model computes attention as
``attention_interface(module, query, key, value, attention_mask, scaling=..., **kwargs)`` with ``query``/``key``
already rotated (RoPE) and shaped ``[batch, heads, seq, head_dim]``. We register ``ATTN_NAME`` as an implementation
that calls the *model's own* eager function (the ``eager_attention_forward`` defined next to the attention module, so
model-specific details like GPT-2's dtype handling or GQA ``repeat_kv`` stay exact) and hands q, k, v, the returned
probabilities and the scaling to the active recorder. With no recorder active it behaves exactly like eager attention.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

ATTN_NAME = "atlas_capture"

Recorder = Callable[["AttentionCall"], None]


@dataclass
class AttentionCall:
    """One attention call of one layer in one forward pass (tensors are live, on the model's device)."""

    layer: int
    module: nn.Module
    query: torch.Tensor  # [B, H, T, d]
    key: torch.Tensor  # [B, KV, S, d]
    value: torch.Tensor  # [B, KV, S, dv]
    weights: torch.Tensor  # [B, H, T, S]: the model's own probabilities
    scaling: float
    mask: torch.Tensor | None  # as passed to the attention function (additive float or boolean), or None


class _State(threading.local):
    recorder: Recorder | None = None
    order: dict[int, int] | None = None


_STATE = _State()


def generic_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None,
                            dropout: float = 0.0, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q·kᵀ·scaling + mask)·v with GQA key/value sharing; used when a model ships no eager function."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    rep = query.shape[1] // key.shape[1]
    if rep > 1:
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def eager_function_of(module: nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The eager attention function defined in the module's own modeling file, else the generic one."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    return fn if callable(fn) else generic_eager_attention


def capture_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, scaling: float | None = None,
                              dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention that reports q, k, v and probabilities to the active recorder."""
    out, weights = eager_function_of(module)(module, query, key, value, attention_mask, scaling=scaling,
                                             dropout=dropout, **kwargs)
    rec, order = _STATE.recorder, _STATE.order
    if rec is not None and order is not None:
        layer = order.setdefault(id(module), len(order))
        s = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
        rec(AttentionCall(layer, module, query, key, value, weights, s, attention_mask))
    return out, weights


def register() -> None:
    """Register ``ATTN_NAME`` for attention and for mask creation (eager-style additive masks). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTN_NAME, capture_attention_forward)
    if ATTN_NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(ATTN_NAME, eager_mask)


def install(model: nn.Module) -> None:
    """Switch a loaded model to the capturing attention implementation."""
    register()
    model.set_attn_implementation(ATTN_NAME)


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """Route attention calls to ``recorder`` while active. Layers are numbered by first call order."""
    prev = (_STATE.recorder, _STATE.order)
    _STATE.recorder, _STATE.order = recorder, {}
    try:
        yield
    finally:
        _STATE.recorder, _STATE.order = prev


def run_forward(model: nn.Module, recorder: Recorder, **inputs: Any) -> Any:
    """One forward pass (no grad) reporting every layer's attention call to ``recorder``: through the registered
    attention function, or through forward hooks when the model carries a fallback plan (see `fallback`)."""
    from .fallback import hooked_forward, plan_of

    plan = plan_of(model)
    with torch.no_grad():
        if plan is not None:
            return hooked_forward(model, plan, recorder, **inputs)
        with recording(recorder):
            return model(**inputs)


def record_forward(model: nn.Module, **inputs: Any) -> list[AttentionCall]:
    """Run one forward pass (no grad) and return its attention calls, detached, in layer order."""
    calls: list[AttentionCall] = []

    def keep(c: AttentionCall) -> None:
        calls.append(AttentionCall(c.layer, c.module, c.query.detach(), c.key.detach(), c.value.detach(),
                                   c.weights.detach(), c.scaling, None if c.mask is None else c.mask.detach()))

    run_forward(model, keep, **inputs)
    return sorted(calls, key=lambda c: c.layer)
