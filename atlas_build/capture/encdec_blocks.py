"""One block of an encoder–decoder capture seen through the reading API of a single-stack capture
(`store.CaptureResult`): ``facts``, ``tokens``, ``layer(l)`` (q, k, v per token row and the model's own attention per input), so the head,
export and site stages read a block like any model.

A self-attention block (``encoder``, ``decoder``) reads one token table (its side's; ``sentence_id`` = pair id), and
its query and key rows are the same tokens. The cross block (`CrossCapture`) reads both: each pair is one sequence
of its query-side (decoder) tokens, positions 0..n_q − 1, then its key-side (encoder) tokens, positions
n_q..n_q + n_k − 1, with ``side`` 0 / 1; q rows of key-side tokens and k/v rows of query-side tokens are zero and
never read (`normalize.HeadSample.side`), and the attention of a pair is the [n, n] square of that sequence holding
the model's [n_q, n_k] cross-attention in its query rows × key columns (zero elsewhere). The model's stored attention is the truth: for a block with additive
score terms (T5's relative position bias, ``facts.has_position_bias``) every attention score is computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..normalize import key_starts
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


@dataclass
class CrossLayer:
    """One layer of the cross block over the pair sequences of `CrossCapture` (q, k, v [N, heads, d] float32)."""

    source: BlockLayer
    q_from: np.ndarray  #: [N] row of the source's q for each token, -1 for key-side tokens
    k_from: np.ndarray  #: [N] row of the source's k/v for each token, -1 for query-side tokens
    key_start: dict[int, int]  #: pair id → n_q
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _spread(self, name: str, rows: np.ndarray) -> np.ndarray:
        if name not in self._arrays:
            src = getattr(self.source, name)
            out = np.zeros((len(rows), *src.shape[1:]), src.dtype)
            out[rows >= 0] = src[rows[rows >= 0]]
            self._arrays[name] = out
        return self._arrays[name]

    @property
    def q(self) -> np.ndarray:
        return self._spread("q", self.q_from)

    @property
    def k(self) -> np.ndarray:
        return self._spread("k", self.k_from)

    @property
    def v(self) -> np.ndarray:
        return self._spread("v", self.k_from)

    def attention(self, pair_id: int) -> np.ndarray:
        """[H, n, n] float32: the pair's cross-attention [H, n_q, n_k] placed in rows :n_q, columns n_q:."""
        a = self.source.attention(pair_id)
        h, n_q, n_k = a.shape
        if n_q != self.key_start[pair_id]:
            raise ValueError(f"pair {pair_id}: {n_q} attention rows for {self.key_start[pair_id]} decoder tokens")
        out = np.zeros((h, n_q + n_k, n_q + n_k), np.float32)
        out[:, :n_q, n_q:] = a
        return out


def _ordered(tok: TokenTable) -> np.ndarray:
    return np.lexsort((tok.position, tok.sentence_id))


def pair_sequences(queries: TokenTable, keys: TokenTable) -> tuple[TokenTable, np.ndarray, np.ndarray]:
    """The cross block's token table (each pair: query-side tokens, then key-side tokens; ``side`` 0 / 1; token ids
    0..N − 1 in that order) and, per row, the row of the query table and of the key table it comes from (-1: none)."""
    qo, ko = _ordered(queries), _ordered(keys)
    q_pairs = np.unique(queries.sentence_id)
    if not np.array_equal(q_pairs, np.unique(keys.sentence_id)):
        raise ValueError("the decoder and encoder token tables hold different pairs")
    rows_q, rows_k, side, pos, length = [], [], [], [], []
    for pid in q_pairs:
        qr, kr = qo[queries.sentence_id[qo] == pid], ko[keys.sentence_id[ko] == pid]
        n = len(qr) + len(kr)
        rows_q.append(np.r_[qr, np.full(len(kr), -1)])
        rows_k.append(np.r_[np.full(len(qr), -1), kr])
        side.append(np.r_[np.zeros(len(qr), np.uint8), np.ones(len(kr), np.uint8)])
        pos.append(np.arange(n))
        length.append(np.full(n, n))
    q_from, k_from = np.concatenate(rows_q).astype(np.int64), np.concatenate(rows_k).astype(np.int64)
    is_q = q_from >= 0

    def pick(a_q, a_k):
        out = np.empty(len(q_from), np.asarray(a_q).dtype)
        out[is_q], out[~is_q] = np.asarray(a_q)[q_from[is_q]], np.asarray(a_k)[k_from[~is_q]]
        return out

    def pick_list(a_q: list, a_k: list) -> list:
        return [a_q[r] if r >= 0 else a_k[k] for r, k in zip(q_from.tolist(), k_from.tolist())]

    table = TokenTable(np.arange(len(q_from), dtype=np.uint32), pick(queries.sentence_id, keys.sentence_id),
                       np.concatenate(pos).astype(np.uint16), np.concatenate(length).astype(np.uint16),
                       pick(queries.vocab_id, keys.vocab_id), pick(queries.special, keys.special),
                       pick_list(queries.text, keys.text), pick_list(queries.piece, keys.piece),
                       side=np.concatenate(side))
    return table, q_from, k_from


@dataclass
class CrossCapture(BlockCapture):
    """The cross block of an encoder–decoder capture, read like `store.CaptureResult` (module docstring)."""

    q_from: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    k_from: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def layer(self, layer: int) -> CrossLayer:
        lc = self.source.layer(self.block, layer)
        for side, table in (("q", self.source.query_tokens(self.block)), ("kv", self.source.key_tokens(self.block))):
            if not np.array_equal(lc.token_ids(side), table.token_id):
                raise ValueError(f"{self.directory}: cross layer {layer} {side} rows are not the tokens in order")
        tok = self.tokens
        return CrossLayer(lc, self.q_from, self.k_from, key_starts(tok.sentence_id, tok.position, tok.side))


def cross_capture(cap: EncDecCapture) -> CrossCapture:
    """The cross block of `cap` over its pair sequences."""
    block = "cross"
    table, q_from, k_from = pair_sequences(cap.query_tokens(block), cap.key_tokens(block))
    return CrossCapture(cap.facts.block(block), table, cap.directory, block, cap, pair_texts(cap), cap.dtype,
                        batches_total=cap.batches_total, batches_reused=cap.batches_reused, q_from=q_from,
                        k_from=k_from)


def unit_capture(cap: EncDecCapture, block: str) -> BlockCapture:
    """The block ``block`` of `cap` as a single-stack capture (self-attention or cross)."""
    return block_capture(cap, block) if is_self_block(block) else cross_capture(cap)
