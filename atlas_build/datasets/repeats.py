"""Zipf-bias reduction: cap how many occurrences of one token carry query/key points.

Natural text is Zipfian: a few tokens ("the", ",", [CLS]) make up a large share of any sample and crowd the joint
embedding. With a cap N, only the first N occurrences of each vocabulary id (in the seeded sample order) get points;
every token still takes part in the forward pass and appears in the sentence view.
"""

from __future__ import annotations

import numpy as np


def repeat_cap_mask(vocab_id: np.ndarray, cap: int) -> np.ndarray:
    """Boolean mask over tokens: True for the first `cap` occurrences of each vocab id in token order (cap 0: all)."""
    vocab_id = np.asarray(vocab_id)
    n = len(vocab_id)
    if cap <= 0:
        return np.ones(n, dtype=bool)
    order = np.argsort(vocab_id, kind="stable")
    sorted_ids = vocab_id[order]
    starts = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]] if n else np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return rank < cap


def repeat_stats(vocab_id: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    """How many tokens and distinct tokens the cap kept, for the model's manifest."""
    vocab_id = np.asarray(vocab_id)
    return {"tokens": int(len(vocab_id)), "tokens_with_points": int(mask.sum()),
            "distinct_tokens": int(len(np.unique(vocab_id)))}
