"""A head's attention as edges of its joint point set: for each query point, the key points its attention row covers
(same sentence; causal: key position ≤ query position; cross-attention: the sentence's key-side tokens), with the
model's own attention weight.

Attention-aware layouts (`project.faithful`) read these edges; point ids follow `joint.JointSet` (query of the i-th
query token = i, key of the j-th key token = m + j). Rows are capped at ``max_keys`` keys, taken at evenly spaced ranks of the row's
attention (the most attended key always), so long rows (image patches) cost no more than short ones and the kept
keys still span the whole ranking. No randomness: the same input gives the same edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from . import HeadSample, cover
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


def _kept_ranks(count: np.ndarray, max_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows of ``count`` keys: each kept edge's row (index into ``count``) and rank (0 = most attended). A row
    keeps all its ranks, or ``max_keys`` evenly spaced ones (rounded; distinct, as their spacing exceeds 1)."""
    take = np.minimum(count, max_keys)
    row = np.repeat(np.arange(len(count)), take)
    j = np.arange(len(row)) - np.repeat(np.cumsum(take) - take, take)
    c = count[row]
    spaced = np.round(j * ((c - 1) / max(max_keys - 1, 1)))
    return row, np.where(c > max_keys, spaced, j).astype(np.int64)


@dataclass(frozen=True)
class SentenceBlock:
    """One sentence's query and key points (each by position) and the attention between them."""

    points: np.ndarray     #: [n] joint id of each query point (< m)
    keys: np.ndarray       #: [n_k] joint id of each key point (≥ m; self-attention: m + points)
    attention: np.ndarray  #: [n, n_k] float64 the model's attention by query row and key column
    cover: np.ndarray      #: [n, n_k] bool, key j is covered by query i's row (causal: j ≤ i)


def _by_sentence(sample: HeadSample, rows: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """sentence id → (indices into ``rows`` by position, their positions)."""
    sid, pos = np.asarray(sample.sentence_id)[rows], np.asarray(sample.position)[rows]
    order = np.lexsort((pos, sid))
    return {int(s): (order[a:a + c], pos[order[a:a + c]])
            for s, a, c in zip(*np.unique(sid[order], return_index=True, return_counts=True))}


def sentence_blocks(sample: HeadSample, joint: JointSet,
                    attention: Mapping[int, np.ndarray]) -> Iterator[SentenceBlock]:
    """The sentences with at least two query points, two key points and a 2D attention matrix, in sentence id
    order. ``attention``: sentence id → [n, n] matrix by position; tokens beyond it are left out."""
    queries = _by_sentence(sample, joint.token_rows)
    keys = queries if sample.side is None else _by_sentence(sample, joint.key_rows)
    starts = sample.key_starts() or {}
    for s in sorted(queries):
        a = attention.get(s)
        if a is None or np.ndim(a) != 2 or s not in keys:
            continue
        (qi, qp), (ki, kp) = queries[s], keys[s]
        n = min(np.shape(a))
        qi, qp, ki, kp = qi[qp < n], qp[qp < n], ki[kp < n], kp[kp < n]
        if qi.size < 2 or ki.size < 2:
            continue
        allowed = cover(n, sample.causal, starts.get(s) if sample.side is not None else None)
        yield SentenceBlock(qi, joint.m + ki, np.asarray(a, np.float64)[np.ix_(qp, kp)], allowed[np.ix_(qp, kp)])


def attention_pairs(sample: HeadSample, joint: JointSet, attention: Mapping[int, np.ndarray], *,
                    max_keys: int = 16) -> AttentionPairs:
    """The edges of every point query whose row covers at least two point keys with finite, not all-zero
    attention. ``attention``: sentence id → [n, n] matrix by position; tokens beyond it get no edges."""
    if max_keys < 2:
        raise ValueError(f"max_keys must be at least 2, got {max_keys}")
    out_q, out_k, out_a = [], [], []
    for b in sentence_blocks(sample, joint, attention):
        w = np.where(b.cover, b.attention, 0.0)
        count = b.cover.sum(axis=1)
        ok = (count >= 2) & np.isfinite(w).all(axis=1) & (w.max(axis=1) > 0)  # uncovered keys are 0 in w
        rows = np.flatnonzero(ok)
        if not rows.size:
            continue
        by_attention = np.argsort(np.where(b.cover[rows], -w[rows], np.inf), axis=1, kind="stable")
        row, rank = _kept_ranks(count[rows], max_keys)
        col = by_attention[row, rank]
        out_q.append(b.points[rows[row]].astype(np.int64))
        out_k.append(b.keys[col])
        out_a.append(w[rows[row], col])
    if not out_q:
        return AttentionPairs.empty()
    q, k, w = np.concatenate(out_q), np.concatenate(out_k).astype(np.int64), np.concatenate(out_a)
    grouped = np.lexsort((-w, q))
    return AttentionPairs(q[grouped], k[grouped], w[grouped])
