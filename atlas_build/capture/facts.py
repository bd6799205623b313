"""Per-architecture facts, read from the config and from the attention calls of one probe forward pass.

No per-model branches: head counts and scaling are what the attention function actually receives, causality is the
attention module's own ``is_causal`` flag (else the config's ``is_decoder``, else observed zeros above the diagonal),
and additive position terms are flagged by config attributes *and* by checking that softmax(q·kᵀ·scaling + mask)
reproduces the model's probabilities on the probe input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from .attention_math import TOLERANCE, recompute_error
from .hook import AttentionCall

# Config attributes whose presence (truthy, or one of the listed values) means additive score terms not in q·k.
POSITION_BIAS_ATTRS: dict[str, tuple[Any, ...] | None] = {
    "alibi": None,
    "use_alibi": None,
    "relative_attention_num_buckets": None,
    "relative_attention": None,
    "position_buckets": None,
    "attn_logit_softcapping": None,
    "position_embedding_type": ("relative_key", "relative_key_query", "alibi"),
}


@dataclass(frozen=True)
class ModelFacts:
    """What the atlas needs to know about a model's attention.

    ``has_position_bias``: the model's scores hold terms that q·k of the captured vectors does not (ALiBi, relative
    position bias, logit soft-capping, or in ``hooks`` mode a rotation applied after the projections), so
    softmax(q·kᵀ·scaling + mask) is not its attention. ``kv_head_of_query[h]`` is the key/value head query head
    ``h`` reads (GQA: ``h // (num_heads // num_kv_heads)``).
    """

    architecture: str
    model_type: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    causal: bool
    kv_head_of_query: tuple[int, ...]
    scaling: float
    has_position_bias: bool
    special_token_ids: tuple[int, ...]
    layer_scaling: tuple[float, ...] = ()  # per layer, when a model scales layers differently (GPT-2 option)
    input_kind: str = "text"  # "text" (input_ids) or "image" (pixel_values)
    patch_grid: tuple[int, ...] = ()  # (rows, cols) of image patches; () for text
    num_prefix_tokens: int = 0  # image models: [CLS] and register tokens before the patches
    patch_size: tuple[int, ...] = ()  # image models: (height, width) of one patch in pixels
    image_size: tuple[int, ...] = ()  # image models: (height, width) of the input the grid was measured on
    capture_mode: str = "interface"  # "interface" (AttentionInterface) or "hooks" (projection-output fallback)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelFacts:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def scaling_of(self, layer: int) -> float:
        return self.layer_scaling[layer] if self.layer_scaling else self.scaling


def text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def config_has_position_bias(config: Any) -> bool:
    for name, values in POSITION_BIAS_ATTRS.items():
        v = getattr(config, name, None)
        if v is None or v is False or v == 0:
            continue
        if values is None or v in values:
            return True
    return False


def probe_inputs(model: nn.Module, tokenizer: Any, device: torch.device) -> dict[str, torch.Tensor]:
    """A tiny input batch (one sequence) for the model's main input."""
    config = model.config
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        size = getattr(config, "image_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        g = torch.Generator().manual_seed(0)
        return {"pixel_values": torch.randn(1, getattr(config, "num_channels", 3), h, w, generator=g).to(device)}
    if tokenizer is not None:
        enc = tokenizer("The quick brown fox jumps over it.", return_tensors="pt")
        ids = enc["input_ids"][:, :16]
    else:
        vocab = int(getattr(text_config(config), "vocab_size", 100))
        ids = torch.arange(7).remainder(vocab).unsqueeze(0)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def is_causal(calls: list[AttentionCall], config: Any) -> bool:
    """The modules' own ``is_causal`` flags, else the config's ``is_decoder``, else zeros above the diagonal."""
    flags = [getattr(c.module, "is_causal", None) for c in calls]
    if all(isinstance(f, bool) for f in flags):
        return all(flags)
    if isinstance(getattr(config, "is_decoder", None), bool) and config.is_decoder:
        return True
    w = calls[0].weights[0]
    return bool((torch.triu(w, diagonal=1) == 0).all()) if w.shape[-1] > 1 else False


def describe(model: nn.Module, tokenizer: Any, inputs: dict[str, torch.Tensor], calls: list[AttentionCall],
             capture_mode: str) -> ModelFacts:
    """The facts of ``model`` from the attention calls (in layer order) it made on the probe ``inputs``."""
    config = model.config
    tcfg = text_config(config)
    num_layers = int(getattr(tcfg, "num_hidden_layers", len(calls)))
    if len(calls) != num_layers or len({c.layer for c in calls}) != num_layers:
        raise SourceError(type(model).__name__, f"unsupported architecture: expected {num_layers} self-attention "
                                                f"calls per forward pass, saw {len(calls)}")
    first = calls[0]
    H, KV, d = first.query.shape[1], first.key.shape[1], first.query.shape[-1]
    if H % KV:
        raise SourceError(type(model).__name__, f"unsupported architecture: {H} query heads, {KV} key heads")
    causal = is_causal(calls, tcfg)
    bias = config_has_position_bias(tcfg) or any(
        recompute_error(c.query, c.key, c.weights, c.scaling, causal) > TOLERANCE for c in calls)
    scalings = tuple(c.scaling for c in sorted(calls, key=lambda c: c.layer))
    grid: tuple[int, ...] = ()
    patch_hw: tuple[int, ...] = ()
    image_hw: tuple[int, ...] = ()
    prefix = 0
    kind = "image" if "pixel_values" in inputs else "text"
    if kind == "image":
        patch = getattr(config, "patch_size", 16)
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        h, w = inputs["pixel_values"].shape[-2:]
        grid = (h // ph, w // pw)
        patch_hw, image_hw = (int(ph), int(pw)), (int(h), int(w))
        prefix = first.query.shape[2] - grid[0] * grid[1]
    special: tuple[int, ...] = ()
    if tokenizer is not None:
        special = tuple(sorted({int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}))
    return ModelFacts(
        architecture=type(model).__name__,
        model_type=str(getattr(config, "model_type", "")),
        num_layers=num_layers, num_heads=H, num_kv_heads=KV, head_dim=d, causal=causal,
        kv_head_of_query=tuple(h // (H // KV) for h in range(H)),
        scaling=scalings[0], has_position_bias=bias, special_token_ids=special,
        layer_scaling=scalings if len(set(scalings)) > 1 else (),
        input_kind=kind, patch_grid=grid, num_prefix_tokens=prefix, patch_size=patch_hw, image_size=image_hw,
        capture_mode=capture_mode,
    )
