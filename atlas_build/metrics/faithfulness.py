"""Faithfulness of a picture, per query (DESIGN.md §1; docs/reference/faithfulness.md).

For each query point, over the keys its attention row covers (same sentence; causal: key position ≤ query
position; cross-attention: the sentence's key-side tokens; only tokens that carry points):

* ``query_rank_corr``: Spearman(−distance(x_qi, x_kj), a_ij) with the model's own attention a_ij;
* ``nearest_key_share``: attention on the key nearest to x_qi ÷ the row's maximum over the covered keys
  (keys tied at the nearest distance share it: their mean attention).

Each is averaged over the queries where it is defined: the row covers at least two keys, its attention is finite
and not all zero, and (for the correlation) neither the attention nor the distances are constant over the row.
A measure no query defines is omitted. The attention side is prepared once per head (`QueryRows`, vectorised per
sentence) and reused for every space; each space's distances, ranks and both measures are one numba pass over the
rows (`_row_measures`): per sentence in numpy, its ~20 array calls on small blocks cost 0.09 s a layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

import numba
import numpy as np

from ..normalize import HeadSample
from ..normalize.joint import JointSet
from ..normalize.padded import padded_space
from ..normalize.pairs import sentence_blocks

__all__ = ["MEASURES", "QueryRows", "space_faithfulness", "layout_faithfulness",
           "highdim_faithfulness"]

MEASURES = ("query_rank_corr", "nearest_key_share")
_EPS = 1e-12


@dataclass(frozen=True)
class _Block:
    """One sentence: its query points (joint indices < m, by position) and the rows' attention side."""

    points: np.ndarray      #: [n] joint index of each query point
    keys: np.ndarray        #: [n_k] joint index of each key point (≥ m)
    cover: np.ndarray       #: [n, n_k] bool, key j is covered by query i's row
    attention: np.ndarray   #: [n, n_k] attention a_ij over the covered keys (0 elsewhere)
    share_ok: np.ndarray    #: [n] bool, rows where nearest_key_share is defined
    rank_ok: np.ndarray     #: [n] bool, rows where the attention ranks vary
    attn_rank: np.ndarray   #: [n, n_k] attention ranks over covered keys, centred per row (0 elsewhere)


def _row_ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of each row of ``v``; NaN ranks last."""
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, axis=1)
    n, c = v.shape
    new = np.ones((n, c), bool)
    new[:, 1:] = (sv[:, 1:] != sv[:, :-1]) & ~(np.isnan(sv[:, 1:]) & np.isnan(sv[:, :-1]))
    end = np.ones((n, c), bool)
    end[:, :-1] = new[:, 1:]
    col = np.broadcast_to(np.arange(c), (n, c))
    first = np.maximum.accumulate(np.where(new, col, 0), axis=1)
    last = np.minimum.accumulate(np.where(end, col, c - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, c))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _centred_ranks(values: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` within each row's covered entries, minus the row's mean rank; 0 elsewhere."""
    r = _row_ranks(np.where(cover, values, np.inf))
    count = cover.sum(axis=1, keepdims=True)
    return np.where(cover, r - (count + 1) / 2.0, 0.0)


@dataclass(frozen=True)
class QueryRows:
    """The attention rows of one head's query points, grouped by sentence."""

    blocks: tuple[_Block, ...]

    @classmethod
    def of(cls, sample: HeadSample, joint: JointSet, attention: Mapping[int, np.ndarray]) -> "QueryRows":
        """``sample``: every token of the head (``joint.token_rows`` index it); ``attention``: sentence id →
        [n, n] matrix by position. Points whose position lies outside their sentence's matrix are left out."""
        blocks = []
        for sb in sentence_blocks(sample, joint, attention):
            cover, block = sb.cover, sb.attention
            finite = np.where(cover, np.isfinite(block), True).all(axis=1)
            block = np.where(cover & finite[:, None], np.nan_to_num(block), 0.0)
            ok = finite & (cover.sum(axis=1) >= 2) & (block.max(axis=1, initial=0.0) > 0)
            if not ok.any():
                continue
            ranks = _centred_ranks(block, cover)
            rank_ok = ok & ((ranks ** 2).sum(axis=1) > 0)
            blocks.append(_Block(sb.points, sb.keys, cover, block, ok, rank_ok, ranks))
        return cls(tuple(blocks))

    @cached_property
    def _flat(self) -> tuple[np.ndarray, ...]:
        """Every row where a measure can be defined, in block order, with its covered keys as one CSR list: (query
        point, key offsets, key points, attention, centred attention ranks, rank_ok, row maximum)."""
        parts: list[list[np.ndarray]] = [[] for _ in range(7)]
        for b in self.blocks:
            ri = np.flatnonzero(b.share_ok)
            cover, attention = b.cover[ri], b.attention[ri]
            rr, cc = np.nonzero(cover)  # row-major: each row's keys together, in key order
            for part, v in zip(parts, (b.points[ri], cover.sum(axis=1), b.keys[cc], attention[rr, cc],
                                       b.attn_rank[ri][rr, cc], b.rank_ok[ri], attention.max(axis=1))):
                part.append(v)
        dtypes = (np.int64, np.int64, np.int64, np.float64, np.float64, np.bool_, np.float64)
        point, counts, keys, attention, attn_rank, rank_ok, row_max = (
            np.concatenate(p).astype(t) if p else np.empty(0, t) for p, t in zip(parts, dtypes))
        starts = np.zeros(len(point) + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        return point, starts, keys, attention, attn_rank, rank_ok, row_max

    def measure(self, x: np.ndarray, cosine: bool) -> dict[str, float]:
        """Both measures with every point at its row of ``x`` (float64, joint order): Euclidean distances, or with
        ``cosine`` 1 − x_q·x_k (rows already unit length)."""
        point, starts, keys, attention, attn_rank, rank_ok, row_max = self._flat
        corr, share = _row_measures(np.ascontiguousarray(x, np.float64), cosine, point, starts, keys, attention,
                                    attn_rank, rank_ok, row_max)
        out = {}
        for name, v in zip(MEASURES, (corr, share)):
            v = v[~np.isnan(v)]
            if v.size:
                out[name] = float(np.clip(v, -1.0, 1.0).mean()) if name == "query_rank_corr" else float(v.mean())
        return out


@numba.njit(nogil=True, cache=False)
def _row_measures(x, cosine, point, starts, keys, attention, attn_rank, rank_ok, row_max):
    """Per row (each one where the share is defined on the attention side): Spearman(−distance, attention) over its
    covered keys (where ``rank_ok``) and the nearest key's attention share; NaN where not defined (a non-finite
    distance, or every covered key at the nearest distance)."""
    n_rows, dims = point.size, x.shape[1]
    corr = np.full(n_rows, np.nan)
    share = np.full(n_rows, np.nan)
    for r in range(n_rows):
        a, b = starts[r], starts[r + 1]
        n = b - a
        q = point[r]
        d = np.empty(n)
        finite = True
        for j in range(n):
            kj = keys[a + j]
            acc = 0.0
            if cosine:
                for c in range(dims):
                    acc += x[q, c] * x[kj, c]
                d[j] = 1.0 - acc
            else:
                for c in range(dims):
                    diff = x[q, c] - x[kj, c]
                    acc += diff * diff
                d[j] = np.sqrt(acc)
            finite = finite and np.isfinite(d[j])
        if not finite:
            continue
        dmin = d.min()
        n_near, near_attn = 0, 0.0
        for j in range(n):
            if d[j] == dmin:
                n_near += 1
                near_attn += attention[a + j]
        if n_near == n:
            continue
        share[r] = near_attn / n_near / row_max[r]
        if rank_ok[r]:
            order = np.argsort(d, kind="mergesort")
            centre = (n + 1) / 2.0
            num, sdr, sar = 0.0, 0.0, 0.0
            lo = 0
            while lo < n:  # a run of tied distances shares its mean rank
                hi = lo
                while hi + 1 < n and d[order[hi + 1]] == d[order[lo]]:
                    hi += 1
                dr = (lo + hi) / 2.0 + 1.0 - centre
                for t in range(lo, hi + 1):
                    ar = attn_rank[a + order[t]]
                    num -= dr * ar
                    sdr += dr * dr
                    sar += ar * ar
                lo = hi + 1
            corr[r] = num / np.sqrt(sdr * sar)
    return corr, share


def space_faithfulness(rows: QueryRows, x: np.ndarray, metric: str = "euclidean") -> dict[str, float]:
    """The measures with every point at its row of ``x`` (joint order, ``metric`` ``euclidean`` or ``cosine``)."""
    x = np.asarray(x, np.float64)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return rows.measure(np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), _EPS), cosine=True)
    if metric != "euclidean":
        raise ValueError(f"metric must be cosine or euclidean, got {metric!r}")
    return rows.measure(x, cosine=False)


def layout_faithfulness(rows: QueryRows, coords: np.ndarray) -> dict[str, float]:
    """The measures of a 2D/3D layout (Euclidean distance in the picture)."""
    return space_faithfulness(rows, coords, "euclidean")


def highdim_faithfulness(rows: QueryRows, joint: JointSet, *, metric: str,
                         padded: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """The ceilings: ``normalised`` = the joint set the layouts are computed from (layout ``metric``);
    ``padded`` = the same points in the padded space (`normalize.padded`: exact per-query ranking by q·k), which
    `faithful-2d` is computed from; pass ``padded`` when the caller already has that space of ``joint``."""
    space = padded_space(joint.queries, joint.keys) if padded is None else padded
    return {"normalised": space_faithfulness(rows, joint.x, metric),
            "padded": space_faithfulness(rows, space, "euclidean")}
