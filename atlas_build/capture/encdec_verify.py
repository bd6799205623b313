"""Check an encoder–decoder capture against the model itself: for each pair run alone through the model's eager
attention (``output_attentions``: encoder, decoder and cross attentions), the stored probabilities and
softmax(q·kᵀ·scaling + bias + mask) recomputed from the stored vectors (and stored additive score terms) must equal
the model's own, block by block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..datasets.audio import AudioClip
from . import hook
from .attention_math import TOLERANCE, recompute
from .encdec import BLOCKS, KEY_SIDE, QUERY_SIDE
from .encdec_inputs import encoder_inputs
from .encdec_sources import LoadedEncDec
from .encdec_store import EncDecCapture
from .run import Encoded

#: The model output holding each block's eager attentions.
EAGER_OUTPUTS = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}


@dataclass(frozen=True)
class BlockReport:
    max_recomputed_error: float  # recomputed from captured q/k (+ stored bias) vs the model's eager attention
    max_stored_error: float  # stored probabilities vs the model's eager attention
    max_causal_leak: float  # largest stored weight above the diagonal (causal blocks), else 0
    max_error_without_bias: float  # recomputed from q/k alone: how far additive score terms move attention


@dataclass(frozen=True)
class EncDecVerifyReport:
    pairs: int
    blocks: dict[str, BlockReport] = field(default_factory=dict)

    def ok(self, tol: float = TOLERANCE) -> bool:
        return all(max(r.max_recomputed_error, r.max_stored_error, r.max_causal_leak) <= tol
                   for r in self.blocks.values())


def eager_block_attentions(model: torch.nn.Module, **inputs: Any) -> dict[str, list[torch.Tensor]]:
    """Each block's per-layer attention probabilities from a plain eager run."""
    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(**inputs, output_attentions=True, use_cache=False)
    finally:
        hook.register()
        model.set_attn_implementation(impl)
    return {b: [a.detach() for a in getattr(out, EAGER_OUTPUTS[b])] for b in BLOCKS}


def _inputs(loaded: LoadedEncDec, cap: EncDecCapture, pid: int, clips: dict[int, AudioClip]) -> dict[str, Any]:
    device = next(loaded.model.parameters()).device
    enc, dec = cap.tokens["encoder"], cap.tokens["decoder"]
    if cap.facts.encoder_input == "audio":
        inputs, _ = encoder_inputs(loaded, [clips[pid]], device)
    else:
        ids = tuple(int(i) for i in enc.vocab_id[enc.sentence_id == pid])
        inputs, _ = encoder_inputs(loaded, [Encoded(pid, ids)], device)
    d = torch.tensor(dec.vocab_id[dec.sentence_id == pid], dtype=torch.long, device=device)[None]
    return {**inputs, "decoder_input_ids": d}


def verify_encdec(loaded: LoadedEncDec, cap: EncDecCapture, clips: Sequence[AudioClip] = (),
                  pair_ids: Sequence[int] | None = None, max_pairs: int = 8) -> EncDecVerifyReport:
    """Compare the capture with eager attention for up to ``max_pairs`` pairs (every block, layer and head)."""
    ids = [int(i) for i in cap.pairs.column("pair_id").to_pylist()] if pair_ids is None else list(pair_ids)
    ids = ids[:max_pairs]
    by_clip = {c.clip_id: c for c in clips}
    eager = {pid: eager_block_attentions(loaded.model, **_inputs(loaded, cap, pid, by_clip)) for pid in ids}
    reports = {}
    for block in BLOCKS:
        f = cap.facts.block(block)
        q_side, k_side = cap.tokens[QUERY_SIDE[block]], cap.tokens[KEY_SIDE[block]]
        err_rec = err_sto = leak = err_plain = 0.0
        for layer in range(f.num_layers):
            lc = cap.layer(block, layer)
            q_row = {int(t): r for r, t in enumerate(lc.token_ids("q"))}
            k_row = {int(t): r for r, t in enumerate(lc.token_ids("kv"))}
            for pid in ids:
                qr = [q_row[int(t)] for t in q_side.token_id[q_side.sentence_id == pid]]
                kr = [k_row[int(t)] for t in k_side.token_id[k_side.sentence_id == pid]]
                ref = eager[pid][block][layer][0].double().cpu()
                q = torch.from_numpy(lc.q[qr]).transpose(0, 1)
                k = torch.from_numpy(lc.k[kr]).transpose(0, 1)
                bias = lc.bias(pid)
                p = recompute(q, k, f.scaling_of(layer), f.causal,
                              bias=None if bias is None else torch.from_numpy(bias))
                err_rec = max(err_rec, (p - ref).abs().max().item())
                plain = recompute(q, k, f.scaling_of(layer), f.causal)
                err_plain = max(err_plain, (plain - ref).abs().max().item())
                stored = torch.from_numpy(lc.attention(pid)).double()
                err_sto = max(err_sto, (stored - ref).abs().max().item())
                if f.causal:
                    leak = max(leak, torch.triu(stored, diagonal=1).abs().max().item())
        reports[block] = BlockReport(err_rec, err_sto, leak, err_plain)
    return EncDecVerifyReport(len(ids), reports)


__all__ = ["BlockReport", "EncDecVerifyReport", "eager_block_attentions", "verify_encdec"]
