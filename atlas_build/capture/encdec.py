"""Encoder–decoder attention: which attention module is which block, and the facts of each block.

An encoder–decoder model (T5, BART, Marian, Whisper, ...) makes three kinds of attention call through transformers'
`AttentionInterface`: encoder self-attention, decoder self-attention (causal) and decoder→encoder cross-attention
(queries from decoder tokens, keys from encoder tokens). No per-model branches: one probe pass with an encoder
length S different from the decoder length T sorts every attention module by the shape of what it received —
(S, S) encoder, (T, T) decoder, (T, S) cross — and numbers a block's layers by first-call order. Each block is then
described like a single-stack model (`facts.ModelFacts`), with ``has_position_bias`` set when the call carried
additive score terms (T5's relative position bias, `hook.SCORE_BIAS_KWARGS`) or when softmax(q·kᵀ·scaling + mask)
does not reproduce the model's probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from . import hook
from .attention_math import TOLERANCE, recompute
from .facts import ModelFacts

BLOCKS = ("encoder", "decoder", "cross")
#: Which token sequence a block's queries and keys come from.
QUERY_SIDE = {"encoder": "encoder", "decoder": "decoder", "cross": "decoder"}
KEY_SIDE = {"encoder": "encoder", "decoder": "decoder", "cross": "encoder"}
#: Config attributes bounding the encoder's / decoder's sequence length (first present wins).
ENCODER_LIMIT_ATTRS = ("max_source_positions", "max_position_embeddings", "n_positions")
DECODER_LIMIT_ATTRS = ("max_target_positions", "max_position_embeddings", "n_positions")
#: Where the decoder's first input token is found: generation config, then config attributes in this order.
DECODER_START_ATTRS = ("decoder_start_token_id", "bos_token_id", "pad_token_id")
PROBE_DECODER_LENGTH = 4


@dataclass(frozen=True)
class EncDecFacts:
    """What the atlas needs to know about an encoder–decoder model: one `ModelFacts` per block plus the inputs.

    ``encoder_input``: "text" (token ids) or "audio" (log-mel frames; one encoder position covers
    ``frames_per_position`` frames = ``seconds_per_position`` seconds). Limits are in encoder positions and decoder
    tokens (0: none known)."""

    blocks: tuple[tuple[str, ModelFacts], ...]
    encoder_input: str
    decoder_start_token_id: int
    eos_token_ids: tuple[int, ...]
    encoder_limit: int
    decoder_limit: int
    frames_per_position: int = 0
    seconds_per_position: float = 0.0
    num_mel_bins: int = 0

    def block(self, name: str) -> ModelFacts:
        return dict(self.blocks)[name]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = {name: f.to_json() for name, f in self.blocks}
        d["eos_token_ids"] = list(self.eos_token_ids)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EncDecFacts:
        blocks = tuple((name, ModelFacts.from_json(d["blocks"][name])) for name in BLOCKS if name in d["blocks"])
        return cls(**{**d, "blocks": blocks, "eos_token_ids": tuple(d["eos_token_ids"])})


def first_int(objs: tuple[Any, ...], attrs: tuple[str, ...]) -> int | None:
    """The first positive-or-zero integer found among ``attrs`` of ``objs`` (attribute-major order)."""
    for a in attrs:
        for o in objs:
            v = getattr(o, a, None)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                return v
    return None


def decoder_start_id(model: nn.Module) -> int:
    config, gen = model.config, getattr(model, "generation_config", None)
    start = first_int(tuple(o for o in (gen, config) if o is not None), DECODER_START_ATTRS)
    if start is None:
        raise SourceError(type(model).__name__, "no decoder start token (decoder_start_token_id, bos_token_id or "
                                                "pad_token_id) in its config")
    return start


def eos_ids(model: nn.Module) -> tuple[int, ...]:
    for o in (getattr(model, "generation_config", None), model.config):
        v = getattr(o, "eos_token_id", None)
        if isinstance(v, int):
            return (v,)
        if isinstance(v, (list, tuple)) and v:
            return tuple(int(x) for x in v)
    return ()


def config_limit(config: Any, attrs: tuple[str, ...]) -> int:
    v = first_int((config,), attrs)
    return v if v and v < 1_000_000 else 0


def encoder_convs(model: nn.Module) -> list[nn.Conv1d]:
    """The 1-D convolutions of the encoder (audio front ends), in module order."""
    get = getattr(model, "get_encoder", None)
    enc = get() if callable(get) else model
    return [m for m in enc.modules() if isinstance(m, nn.Conv1d)]


def audio_shape(model: nn.Module) -> tuple[int, int, int]:
    """(mel bins, frames per encoder position, encoder positions) of an audio encoder: the first convolution's input
    channels, the product of the convolutions' strides, the encoder's position limit."""
    convs = encoder_convs(model)
    if not convs:
        raise SourceError(type(model).__name__, "an audio encoder without a 1-D convolution front end")
    stride = 1
    for c in convs:
        stride *= int(c.stride[0])
    positions = config_limit(model.config, ENCODER_LIMIT_ATTRS)
    if not positions:
        raise SourceError(type(model).__name__, "no encoder position limit (max_source_positions) in its config")
    return int(convs[0].in_channels), stride, positions


def classify(calls: list[hook.AttentionCall], enc_len: int, dec_len: int) -> dict[int, tuple[str, int]]:
    """id(module) → (block, layer within the block), from the (query length, key length) of each call."""
    kinds = {(enc_len, enc_len): "encoder", (dec_len, dec_len): "decoder", (dec_len, enc_len): "cross"}
    out: dict[int, tuple[str, int]] = {}
    counts = dict.fromkeys(BLOCKS, 0)
    for c in calls:
        block = kinds.get((c.query.shape[2], c.key.shape[2]))
        if block is None:
            raise SourceError(type(c.module).__name__, f"an attention call of shape {tuple(c.query.shape[2:3])} × "
                                                       f"{tuple(c.key.shape[2:3])} is neither encoder, decoder "
                                                       "nor cross-attention")
        if id(c.module) not in out:
            out[id(c.module)] = (block, counts[block])
            counts[block] += 1
    missing = [b for b in BLOCKS if not counts[b]]
    if missing:
        raise SourceError(type(calls[0].module).__name__ if calls else "model",
                          f"unsupported architecture: no {', '.join(missing)} attention calls seen")
    return out


def _nonzero(bias: torch.Tensor | None) -> bool:
    return bias is not None and bool(bias.abs().max() > 0)


def block_facts(model: nn.Module, block: str, calls: list[hook.AttentionCall], special: tuple[int, ...],
                input_kind: str) -> ModelFacts:
    """One block described from its calls (in layer order) on the probe input."""
    first = calls[0]
    H, KV, d = first.query.shape[1], first.key.shape[1], first.query.shape[-1]
    if H % KV:
        raise SourceError(type(model).__name__, f"unsupported architecture: {H} query heads, {KV} key heads")
    flags = [getattr(c.module, "is_causal", None) for c in calls]
    if all(isinstance(f, bool) for f in flags):
        causal = all(flags)
    else:
        causal = block == "decoder" and bool((torch.triu(first.weights[0], diagonal=1) == 0).all())
    bias = any(_nonzero(c.bias) for c in calls) or any(
        (recompute(c.query, c.key, c.scaling, causal) - c.weights.double()).abs().max().item() > TOLERANCE
        for c in calls)
    scalings = tuple(c.scaling for c in calls)
    return ModelFacts(
        architecture=type(model).__name__, model_type=str(getattr(model.config, "model_type", "")),
        num_layers=len(calls), num_heads=H, num_kv_heads=KV, head_dim=d, causal=causal,
        kv_head_of_query=tuple(h // (H // KV) for h in range(H)), scaling=scalings[0], has_position_bias=bias,
        special_token_ids=special, layer_scaling=scalings if len(set(scalings)) > 1 else (),
        input_kind=input_kind, capture_mode="interface")


def record(model: nn.Module, recorder: hook.Recorder, **inputs: Any) -> Any:
    """One forward pass (no grad, no cache) with every attention call reported to ``recorder``."""
    with torch.no_grad(), hook.recording(recorder):
        return model(**inputs, use_cache=False)


def probe_encdec(model: nn.Module, tokenizer: Any, device: torch.device,
                 feature_extractor: Any = None) -> tuple[dict[int, tuple[str, int]], EncDecFacts]:
    """Run one probe pair through the model: the module → (block, layer) map and the model's facts."""
    config = model.config
    audio = getattr(model, "main_input_name", "input_ids") == "input_features"
    start = decoder_start_id(model)
    g = torch.Generator().manual_seed(0)
    if audio:
        bins, stride, positions = audio_shape(model)
        enc_inputs = {"input_features": torch.randn(1, bins, stride * positions, generator=g)}
    else:
        vocab = int(getattr(config, "vocab_size", 100))
        ids = (torch.arange(7) + 5).remainder(vocab)[None]
        enc_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    calls: list[hook.AttentionCall] = []
    keep = lambda c: calls.append(c)  # noqa: E731
    dec = torch.full((1, 1), start, dtype=torch.long)
    record(model, keep, **{k: v.to(device) for k, v in enc_inputs.items()}, decoder_input_ids=dec.to(device))
    enc_len = max(c.key.shape[2] for c in calls)  # the decoder has one token: the longest keys are the encoder's
    dec_len = PROBE_DECODER_LENGTH if enc_len != PROBE_DECODER_LENGTH else PROBE_DECODER_LENGTH + 1
    dec = torch.cat([dec, (torch.arange(dec_len - 1) + 5).remainder(int(getattr(config, "vocab_size", 100)))[None]],
                    1)
    calls.clear()
    record(model, keep, **{k: v.to(device) for k, v in enc_inputs.items()}, decoder_input_ids=dec.to(device))
    modules = classify(calls, enc_len, dec_len)
    special: tuple[int, ...] = ()
    if tokenizer is not None:
        special = tuple(sorted({int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}))
    per_block: dict[str, list[hook.AttentionCall]] = {b: [] for b in BLOCKS}
    for c in calls:
        per_block[modules[id(c.module)][0]].append(c)
    enc_kind = "audio" if audio else "text"
    blocks = tuple((b, block_facts(model, b, per_block[b], special, enc_kind if b == "encoder" else "text"))
                   for b in BLOCKS)
    frames = seconds = bins = 0
    if audio:
        bins, frames, _ = audio_shape(model)
        hop = getattr(feature_extractor, "hop_length", None)
        rate = getattr(feature_extractor, "sampling_rate", None)
        if not isinstance(hop, int) or not isinstance(rate, int):
            raise SourceError(type(model).__name__, "its feature extractor states no hop_length / sampling_rate")
        seconds = frames * hop / rate
    facts = EncDecFacts(blocks, enc_kind, start, eos_ids(model), config_limit(config, ENCODER_LIMIT_ATTRS),
                        config_limit(config, DECODER_LIMIT_ATTRS), frames, seconds, bins)
    return modules, facts
