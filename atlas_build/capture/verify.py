"""Check a capture against the model itself: softmax(q·kᵀ·scaling + mask) from the stored vectors, and the stored
probabilities, must equal the model's own eager ``output_attentions`` for each sentence run alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import hook
from .attention_math import TOLERANCE, recompute
from .sources import LoadedModel
from .store import CaptureResult, read_layer


@dataclass(frozen=True)
class VerifyReport:
    sentences: int
    max_recomputed_error: float  # recomputed from captured q/k vs the model's eager attention
    max_stored_error: float  # stored probabilities vs the model's eager attention
    max_causal_leak: float  # largest stored weight above the diagonal (causal models), else 0

    def ok(self, tol: float = TOLERANCE) -> bool:
        return max(self.max_recomputed_error, self.max_stored_error, self.max_causal_leak) <= tol


def eager_attentions(model: nn.Module, **inputs: Any) -> list[torch.Tensor]:
    """The model's own attention probabilities from a plain eager run (``output_attentions=True``)."""
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    finally:
        hook.register()
        model.set_attn_implementation(impl)
    return [a.detach() for a in out.attentions]


def verify_capture(loaded: LoadedModel, result: CaptureResult, sentence_ids: Sequence[int] | None = None,
                   max_sentences: int = 8) -> VerifyReport:
    """Compare the capture with eager attention for up to ``max_sentences`` sentences (all heads, all layers)."""
    facts, tokens = result.facts, result.tokens
    ids = list(dict.fromkeys(tokens.sentence_id.tolist())) if sentence_ids is None else list(sentence_ids)
    ids = ids[:max_sentences]
    layers = [read_layer(result.directory, layer) for layer in range(facts.num_layers)]
    device = next(loaded.model.parameters()).device
    err_rec = err_sto = leak = 0.0
    for sid in ids:
        rows = np.flatnonzero(tokens.sentence_id == sid)
        input_ids = torch.tensor(tokens.vocab_id[rows], dtype=torch.long, device=device)[None]
        eager = eager_attentions(loaded.model, input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
        for layer, lc in enumerate(layers):
            ref = eager[layer][0].double().cpu()
            q = torch.from_numpy(lc.q[rows]).transpose(0, 1)
            k = torch.from_numpy(lc.k[rows]).transpose(0, 1)
            p = recompute(q, k, facts.scaling_of(layer), facts.causal)
            err_rec = max(err_rec, (p - ref).abs().max().item())
            stored = torch.from_numpy(lc.attention(sid)).double()
            err_sto = max(err_sto, (stored - ref).abs().max().item())
            if facts.causal:
                leak = max(leak, torch.triu(stored, diagonal=1).abs().max().item())
    return VerifyReport(len(ids), err_rec, err_sto, leak)
