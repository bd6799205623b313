"""Attention arithmetic shared by both capture paths (a leaf module: it imports only torch).

Masking, softmax(q·kᵀ·scaling + mask) recomputed from captured vectors, the generic eager attention used when a
model ships none, and the estimate of a model's scaling from its own probabilities.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

TOLERANCE = 1e-4  # largest |p − p_model| for recomputed probabilities to count as the model's own


def share_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Key/value heads ``[.., KV, S, d]`` repeated to ``num_heads`` (GQA: query head h reads h // (H/KV))."""
    rep = num_heads // x.shape[-3]
    return x.repeat_interleave(rep, dim=-3) if rep > 1 else x


def allowed_keys(T: int, S: int, causal: bool, device: torch.device | str = "cpu",
                 key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean [.., T, S]: which keys each query may attend to (causal: keys up to its own position, aligned to
    the last key; ``key_valid`` [.., S]: real, not padding, keys)."""
    allowed = torch.ones(T, S, dtype=torch.bool, device=device)
    if causal:
        allowed = torch.tril(allowed, diagonal=S - T)
    if key_valid is not None:
        allowed = allowed & key_valid[..., None, None, :].bool()
    return allowed


def recompute(q: torch.Tensor, k: torch.Tensor, scaling: float, causal: bool,
              key_valid: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scaling + bias + mask) in float64 for q [.., H, T, d], k [.., KV, S, d] (``bias``: additive
    score terms broadcastable to [.., H, T, S], such as a relative position bias)."""
    q, k = q.double(), share_kv(k.double(), q.shape[-3])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias.double()
    allowed = allowed_keys(*scores.shape[-2:], causal, scores.device, key_valid)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


def recompute_error(q: torch.Tensor, k: torch.Tensor, weights: torch.Tensor, scaling: float, causal: bool) -> float:
    """Largest difference between the recomputed probabilities and ``weights`` (the model's own)."""
    return (recompute(q, k, scaling, causal) - weights.double()).abs().max().item()


def generic_eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None,
                            dropout: float = 0.0, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q·kᵀ·scaling + mask)·v in the model's dtype, with an additive or boolean mask as transformers passes
    it; for models that ship no eager attention function of their own."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    key, value = share_kv(key, query.shape[1]), share_kv(value, query.shape[1])
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def estimate_scaling(samples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], causal: bool) -> float:
    """The factor s of log p_ij = s·q_i·k_j + c_i over allowed (i, j), from (query [B, H, T, d], key [B, KV, T, d],
    probabilities [B, H, T, T]) of one sequence (batch row 0) per layer: least squares, snapped to 1/√d or 1 when
    close. If no single factor reproduces the probabilities (additive score terms), the 1/√d convention."""
    num = den = 0.0
    for query, key, weights in samples:
        q, p = query[0].double(), weights[0].double()
        k = share_kv(key[0].double(), q.shape[0])
        dots = q @ k.transpose(-1, -2)
        allowed = allowed_keys(*dots.shape[-2:], causal, dots.device) & (p > 1e-30)
        w = allowed.double()
        cnt = w.sum(-1, keepdim=True).clamp(min=1)
        logp = torch.where(allowed, p.clamp(min=1e-300).log(), 0.0)
        x = torch.where(allowed, dots - (dots * w).sum(-1, keepdim=True) / cnt, 0.0)
        y = torch.where(allowed, logp - (logp * w).sum(-1, keepdim=True) / cnt, 0.0)
        num += float((x * y).sum())
        den += float((x * x).sum())
    default = samples[0][0].shape[-1] ** -0.5
    s = num / den if den > 0 else default
    for snap in (default, 1.0):
        if abs(s - snap) <= 1e-3 * snap:
            s = snap
    exact = all(recompute_error(q, k, p, s, causal) <= TOLERANCE for q, k, p in samples)
    return s if exact else default  # extra score terms: the fit is biased, keep the 1/√d convention
