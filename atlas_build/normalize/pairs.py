"""A head's attention as edges of its joint point set: for each query point, the key points its attention row covers
(same sentence; causal: key position ≤ query position), with the model's own attention weight.

Attention-aware layouts (`project.faithful`) read these edges; point ids follow `joint.JointSet` (query of the i-th
point token = i, its key = m + i). Rows are capped at ``max_keys`` keys, taken at evenly spaced ranks of the row's
attention (the most attended key always), so long rows (image patches) cost no more than short ones and the kept
keys still span the whole ranking. No randomness: the same input gives the same edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from . import HeadSample
from .joint import JointSet

__all__ = ["AttentionPairs", "SentenceBlock", "attention_pairs", "sentence_blocks"]


@dataclass(frozen=True)
class AttentionPairs:
    """Query→key edges in joint point ids, grouped by query (ascending), each group by attention (descending)."""

    query: np.ndarray      #: [e] int64 joint id of the query point (< m)
    key: np.ndarray        #: [e] int64 joint id of the key point (≥ m)
    attention: np.ndarray  #: [e] float64 the model's attention of that query on that key

    @classmethod
    def empty(cls) -> "AttentionPairs":
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    def __len__(self) -> int:
        return len(self.query)


def _kept_ranks(count: int, max_keys: int) -> np.ndarray:
    """Ranks (0 = most attended) kept from a row of ``count`` keys: all, or ``max_keys`` evenly spaced."""
    if count <= max_keys:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, max_keys)).astype(np.int64))


@dataclass(frozen=True)
class SentenceBlock:
    """One sentence's point tokens (by position) and the attention among them."""

    points: np.ndarray     #: [n] joint id of each point token's query (its key is m + id)
    attention: np.ndarray  #: [n, n] float64 the model's attention by query row and key column
    cover: np.ndarray      #: [n, n] bool, key j is covered by query i's row (causal: j ≤ i)


def sentence_blocks(sample: HeadSample, joint: JointSet,
                    attention: Mapping[int, np.ndarray]) -> Iterator[SentenceBlock]:
    """The sentences of at least two point tokens with a 2D attention matrix, in sentence id order.
    ``attention``: sentence id → [n, n] matrix by position; tokens beyond it are left out."""
    sid = np.asarray(sample.sentence_id)[joint.token_rows]
    pos = np.asarray(sample.position)[joint.token_rows]
    order = np.lexsort((pos, sid))
    for s, start, count in zip(*np.unique(sid[order], return_index=True, return_counts=True)):
        a = attention.get(int(s))
        if a is None or np.ndim(a) != 2:
            continue
        idx = order[start:start + count]
        idx = idx[pos[idx] < min(np.shape(a))]
        if idx.size < 2:
            continue
        p = pos[idx]
        cover = (p[None, :] <= p[:, None]) if sample.causal else np.ones((p.size, p.size), bool)
        yield SentenceBlock(idx, np.asarray(a, np.float64)[np.ix_(p, p)], cover)


def attention_pairs(sample: HeadSample, joint: JointSet, attention: Mapping[int, np.ndarray], *,
                    max_keys: int = 16) -> AttentionPairs:
    """The edges of every point query whose row covers at least two point keys with finite, not all-zero
    attention. ``attention``: sentence id → [n, n] matrix by position; tokens beyond it get no edges."""
    if max_keys < 2:
        raise ValueError(f"max_keys must be at least 2, got {max_keys}")
    m = joint.m
    out_q, out_k, out_a = [], [], []
    for b in sentence_blocks(sample, joint, attention):
        for r in range(b.points.size):
            cols = np.nonzero(b.cover[r])[0]
            w = b.attention[r, cols]
            if cols.size < 2 or not np.isfinite(w).all() or w.max() <= 0:
                continue
            ranked = np.argsort(-w, kind="stable")[_kept_ranks(cols.size, max_keys)]
            out_q.append(np.full(ranked.size, b.points[r], np.int64))
            out_k.append(m + b.points[cols[ranked]])
            out_a.append(w[ranked])
    if not out_q:
        return AttentionPairs.empty()
    q, k, w = np.concatenate(out_q), np.concatenate(out_k).astype(np.int64), np.concatenate(out_a)
    grouped = np.lexsort((-w, q))
    return AttentionPairs(q[grouped], k[grouped], w[grouped])
