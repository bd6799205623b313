"""One block of an encoder–decoder capture seen through the reading API of a single-stack capture
(`store.CaptureResult`): ``facts``, ``tokens``, ``layer(l)`` (q, k, v per token row and the model's own attention per input), so the head,
export and site stages read a block like any model.

A self-attention block (``encoder``, ``decoder``) reads one token table (its side's; ``sentence_id`` = pair id), and
its query and key rows are the same tokens. The model's stored attention is the truth: for a block with additive
score terms (T5's relative position bias, ``facts.has_position_bias``) every attention score is computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .encdec import KEY_SIDE, QUERY_SIDE
from .encdec_store import BlockLayer, EncDecCapture
from .facts import ModelFacts
from .store import TokenTable


def is_self_block(block: str) -> bool:
    """Whether a block's queries and keys come from the same tokens (encoder, decoder; not cross)."""
    return QUERY_SIDE[block] == KEY_SIDE[block]


@dataclass
class BlockCapture:
    """A self-attention block of an encoder–decoder capture, read like `store.CaptureResult`."""

    facts: ModelFacts
    tokens: TokenTable
    directory: Path
    block: str
    source: EncDecCapture = field(repr=False)
    texts: dict[int, str] = field(default_factory=dict)  #: pair id → how the site names the input
    dtype: str = "float16"
    images: list[dict[str, Any]] = field(default_factory=list)  #: none: the interface of image captures
    batches_total: int = 0
    batches_reused: int = 0

    def layer(self, layer: int) -> BlockLayer:
        """One layer of the block; its q and k rows are the token table's rows in order (checked)."""
        lc = self.source.layer(self.block, layer)
        for side in ("q", "kv"):
            ids = lc.token_ids(side)
            if not np.array_equal(ids, self.tokens.token_id):
                raise ValueError(f"{self.directory}: {self.block} layer {layer} {side} rows are not the "
                                 f"{QUERY_SIDE[self.block]} tokens in order")
        return lc

    def qk_weights(self, layer: int) -> None:
        """Projection weights are not recorded for encoder–decoder blocks."""
        return None


def pair_texts(cap: EncDecCapture) -> dict[int, str]:
    """Each pair as the site names it: ``source → target`` (audio: the clip's name → its target)."""
    rows = cap.pairs.select(["pair_id", "source", "target"]).to_pylist()
    return {int(r["pair_id"]): f"{r['source']} → {r['target']}" for r in rows}


def block_capture(cap: EncDecCapture, block: str) -> BlockCapture:
    """The self-attention block `block` of `cap` as a single-stack capture."""
    if not is_self_block(block):
        raise ValueError(f"block {block!r} is not a self-attention block")
    return BlockCapture(cap.facts.block(block), cap.query_tokens(block), cap.directory, block, cap, pair_texts(cap),
                        cap.dtype, batches_total=cap.batches_total, batches_reused=cap.batches_reused)
