"""Small per-head digests of the attention rows: the mean attention by relative position, by key position or by
patch offset (the head's aggregate pattern in the sentence and image views)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .. import SCHEMA_VERSION

MEAN_DIGITS = 5


@dataclass(frozen=True)
class SentenceAttention:
    """One sentence (or image) of one head: its token ids by position and the [n, n] probabilities."""

    sentence_id: int
    token_ids: np.ndarray
    probs: np.ndarray


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.{MEAN_DIGITS}g}") for v in values]


def relative_aggregate(sentences: Sequence[SentenceAttention], causal: bool, layer: int, head: int) -> dict:
    """Mean weight per relative offset j − i (key position − query position) over every query of every sentence;
    causal models only count j ≤ i. Offsets run from `offsets[0]` to `offsets[1]`."""
    longest = max((s.probs.shape[0] for s in sentences), default=1)
    span = longest - 1
    sums = np.zeros(2 * span + 1)
    counts = np.zeros(2 * span + 1, np.int64)
    for s in sentences:
        n = s.probs.shape[0]
        i, j = np.indices((n, n))
        keep = j <= i if causal else np.ones((n, n), bool)
        d = (j - i)[keep] + span
        sums += np.bincount(d, weights=np.asarray(s.probs, np.float64)[keep], minlength=2 * span + 1)
        counts += np.bincount(d, minlength=2 * span + 1)
    hi = 0 if causal else span
    sel = slice(0, span + hi + 1)
    means = np.divide(sums[sel], counts[sel], out=np.zeros_like(sums[sel]), where=counts[sel] > 0)
    return {"schema_version": SCHEMA_VERSION, "layer": int(layer), "head": int(head), "kind": "relative-position",
            "offsets": [-span, hi], "mean": _round(means), "count": [int(c) for c in counts[sel]]}


def key_position_aggregate(sentences: Sequence[SentenceAttention], key_starts: Mapping[int, int], layer: int,
                           head: int) -> dict:
    """Cross-attention: mean weight per key-side position (0 = the first key-side token) over every query-side row
    of every input whose key side reaches that position. Offsets run from 0 to `offsets[1]`."""
    spans = [(s, key_starts[s.sentence_id]) for s in sentences]
    longest = max((s.probs.shape[1] - start for s, start in spans), default=1)
    sums, counts = np.zeros(longest), np.zeros(longest, np.int64)
    for s, start in spans:
        block = np.asarray(s.probs, np.float64)[:start, start:]
        sums[:block.shape[1]] += block.sum(axis=0)
        counts[:block.shape[1]] += block.shape[0]
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return {"schema_version": SCHEMA_VERSION, "layer": int(layer), "head": int(head), "kind": "key-position",
            "offsets": [0, longest - 1], "mean": _round(means), "count": [int(c) for c in counts]}


def patch_aggregate(sentences: Sequence[SentenceAttention], grid: tuple[int, int], prefix: int, layer: int,
                    head: int) -> dict:
    """Image models: mean patch-to-patch weight per 2D offset (Δrow, Δcol) = key patch − query patch, as a
    [2·rows − 1][2·cols − 1] table (Δrow from −(rows − 1) down the table), plus the mean weight on the prefix
    (CLS/register) tokens."""
    rows, cols = grid
    sums = np.zeros((2 * rows - 1, 2 * cols - 1))
    counts = np.zeros_like(sums, np.int64)
    r, c = np.divmod(np.arange(rows * cols), cols)
    dr = (r[None, :] - r[:, None]) + rows - 1
    dc = (c[None, :] - c[:, None]) + cols - 1
    to_prefix, queries = 0.0, 0
    for s in sentences:
        w = np.asarray(s.probs, np.float64)
        patches = w[prefix:prefix + rows * cols, prefix:prefix + rows * cols]
        if patches.shape != (rows * cols, rows * cols):
            raise ValueError(f"image {s.sentence_id} does not have {prefix} + {rows}×{cols} tokens")
        np.add.at(sums, (dr, dc), patches)
        np.add.at(counts, (dr, dc), 1)
        to_prefix += float(w[prefix:, :prefix].sum())
        queries += rows * cols
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return {"schema_version": SCHEMA_VERSION, "layer": int(layer), "head": int(head), "kind": "patch-offset",
            "rows": [-(rows - 1), rows - 1], "cols": [-(cols - 1), cols - 1], "mean": [_round(m) for m in means],
            "count": counts.tolist(), "prefix_mean": float(f"{to_prefix / max(queries, 1):.{MEAN_DIGITS}g}")}
