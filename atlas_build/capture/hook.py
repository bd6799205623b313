"""The capturing attention function, registered in transformers' `AttentionInterface`.

Every modern transformers model computes attention as
``attention_interface(module, query, key, value, attention_mask, scaling=..., **kwargs)`` with ``query``/``key``
already rotated (RoPE) and shaped ``[batch, heads, seq, head_dim]``. We register ``ATTN_NAME`` as an implementation
that calls the *model's own* eager function (the ``eager_attention_forward`` defined next to the attention module, so
model-specific details like GPT-2's dtype handling or GQA ``repeat_kv`` stay exact) and hands q, k, v, the returned
probabilities and the scaling to the active recorder. With no recorder active it behaves exactly like eager attention.
Models whose attention bypasses the interface are captured by `fallback` instead; `forward` picks the path.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .attention_math import generic_eager_attention

ATTN_NAME = "atlas_capture"

Recorder = Callable[["AttentionCall"], None]

#: Keyword arguments of the attention function that carry additive score terms (added to q·k·scaling before the
#: mask): the T5 family passes its relative position bias as ``position_bias``.
SCORE_BIAS_KWARGS = ("position_bias",)


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
    bias: torch.Tensor | None = None  # additive score terms passed beside the mask (T5's relative position bias)


class _State(threading.local):
    recorder: Recorder | None = None
    order: dict[int, int] | None = None


_STATE = _State()


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
        bias = next((kwargs[n] for n in SCORE_BIAS_KWARGS if kwargs.get(n) is not None), None)
        rec(AttentionCall(layer, module, query, key, value, weights, s, attention_mask, bias))
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
