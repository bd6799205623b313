"""Per-head query/key projection weights, read generically from the attention module a layer's call came from.

A head's W_Q is the block of rows ``h*d:(h+1)*d`` of the module's query projection (an ``nn.Linear`` found by the
names in `fallback.PROJECTION_NAMES`: ``q_proj``, ``query``, ...), and likewise W_K for its key/value head. Modules
with fused projections (GPT-2's ``c_attn``) or projections whose sizes do not match the heads the attention function
received give ``None``: the ``wq_wk_correlation`` score is then simply omitted.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .fallback import PROJECTION_NAMES, find_linear


def qk_weights(module: nn.Module, num_heads: int, num_kv_heads: int,
               head_dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(W_Q [H, d, D], W_K [KV, d, D]) float32 of one attention module, or None when it has no separate q/k
    ``nn.Linear`` projections of the expected sizes."""
    q, k = find_linear(module, PROJECTION_NAMES["q"]), find_linear(module, PROJECTION_NAMES["k"])
    if q is None or k is None or q.in_features != k.in_features:
        return None
    if q.out_features != num_heads * head_dim or k.out_features != num_kv_heads * head_dim:
        return None
    D = q.in_features
    wq = q.weight.detach().float().cpu().numpy().reshape(num_heads, head_dim, D)
    wk = k.weight.detach().float().cpu().numpy().reshape(num_kv_heads, head_dim, D)
    return np.ascontiguousarray(wq), np.ascontiguousarray(wk)
