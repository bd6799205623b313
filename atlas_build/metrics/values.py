"""Per-head scores that read the value vectors: where the head's output comes from, not only where it attends.

A head's output for query i (before the output projection W_O) is o_i = Σ_j A_ij v_j. Following the norm-based
analysis of Kobayashi et al. (EMNLP 2020), key j's *contribution* to it is the vector A_ij v_j, of norm A_ij ‖v_j‖:
a token that takes much attention but has a small value vector adds little (an attention sink as a no-op).

| score | range | meaning |
|---|---|---|
| ``first_token_output_share`` | [0, 1] | mean A_i0 ‖v_0‖ / Σ_j A_ij ‖v_j‖ (rows at position ≥ 2, like ``first_token``) |
| ``output_norm_ratio`` | [0, 1] | mean ‖Σ_j A_ij v_j‖ / Σ_j A_ij ‖v_j‖: 1 = contributions aligned, 0 = they cancel |
| ``attended_value_norm`` | ≥ 0 | mean Σ_j A_ij ‖v_j‖ / (mean ‖v_j‖ over the row's allowed keys): > 1 reads large values |

Cross-attention (``key_starts``): the query-side rows over the key-side keys, and ``first_token_output_share`` is the
first key-side token's share (every query row). Rows are pooled over sentences, each weighing 1; ``output_norm_ratio`` and ``attended_value_norm`` use rows with at
least two allowed keys. Rows whose contributions are all zero are skipped. A score without a row is omitted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..normalize import cover

__all__ = ["output_norms", "sentence_rows", "value_scores", "values_by_sentence"]


def values_by_sentence(sentence_id: np.ndarray, position: np.ndarray, values: np.ndarray) -> dict[int, np.ndarray]:
    """sentence id → [n, dv] value vectors by position (n = the sentence's largest position + 1; gaps are zero)."""
    sid, pos = np.asarray(sentence_id), np.asarray(position)
    v = np.asarray(values, np.float64)
    out: dict[int, np.ndarray] = {}
    for s, rows in sentence_rows(sid, pos).items():
        block = np.zeros((int(pos[rows[-1]]) + 1, v.shape[1]))
        block[pos[rows]] = v[rows]
        out[s] = block
    return out


def sentence_rows(sentence_id: np.ndarray, position: np.ndarray) -> dict[int, np.ndarray]:
    """sentence id → its rows ordered by position (one sort, not one scan per sentence)."""
    sid = np.asarray(sentence_id)
    order = np.lexsort((np.asarray(position), sid))
    starts = np.flatnonzero(np.r_[True, sid[order][1:] != sid[order][:-1]]) if len(order) else np.array([], int)
    return {int(sid[order[a]]): order[a:b] for a, b in zip(starts, np.r_[starts[1:], len(order)])}


def _rows(attention: np.ndarray, values: np.ndarray, sid: int, causal: bool,
          start: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One sentence's attention rows cleaned as the scores read them (non-finite and negative weights and keys
    outside the row's cover set to 0, live rows renormalised to 1) and its value vectors cut to its length:
    (a [n, n], v [n, dv], allowed [n, n], live [n])."""
    a = np.nan_to_num(np.asarray(attention, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    n = a.shape[0]
    v = np.asarray(values, np.float64)[:n]
    if v.shape[0] != n:
        raise ValueError(f"sentence {sid}: {v.shape[0]} value vectors for {n} attention rows")
    allowed = cover(n, causal, start)
    a = np.where(allowed, np.clip(a, 0.0, None), 0.0)
    mass = a.sum(axis=1)
    live = mass > 0
    a[live] /= mass[live, None]
    return a, v, allowed, live


def output_norms(attention: Mapping[int, np.ndarray], values: Mapping[int, np.ndarray], causal: bool,
                 key_starts: Mapping[int, int] | None = None) -> dict[int, np.ndarray]:
    """sentence id → [n, 2] by query position: ‖o_i‖ = ‖Σ_j A_ij v_j‖ and Σ_j A_ij ‖v_j‖, from the rows the scores
    read (0 for a row without attention): the flow panel's output norm and total contribution (arguments as
    `value_scores`)."""
    out = {}
    for sid in sorted(attention):
        start = None if key_starts is None else key_starts[sid]
        a, v, _, _ = _rows(attention[sid], values[sid], sid, causal, start)
        out[int(sid)] = np.stack([np.linalg.norm(a @ v, axis=1), a @ np.linalg.norm(v, axis=1)], axis=1)
    return out


def value_scores(attention: Mapping[int, np.ndarray], values: Mapping[int, np.ndarray],
                 causal: bool, key_starts: Mapping[int, int] | None = None) -> dict[str, float]:
    """The value scores of one head (module docstring). ``attention``: sentence id → [n, n] probabilities (rows =
    queries by position); ``values``: sentence id → [n, dv] value vectors of the key/value head by position;
    ``key_starts``: cross-attention's first key-side position per sentence."""
    sums = {"first_token_output_share": [0.0, 0], "output_norm_ratio": [0.0, 0], "attended_value_norm": [0.0, 0]}

    def add(name: str, x: np.ndarray) -> None:
        sums[name][0] += float(x.sum())
        sums[name][1] += int(x.size)

    for sid in sorted(attention):
        start = None if key_starts is None else key_starts[sid]
        a, v, allowed, live = _rows(attention[sid], values[sid], sid, causal, start)
        nu = np.linalg.norm(v, axis=1)
        contrib = a * nu[None, :]
        total = contrib.sum(axis=1)
        out_norm = np.linalg.norm(a @ v, axis=1)
        keys = allowed.sum(axis=1)
        mean_nu = (allowed * nu[None, :]).sum(axis=1) / np.maximum(keys, 1)
        ok = live & (total > 0)
        pos = np.arange(len(a))
        first = ok & (pos >= 2) if start is None else ok
        if first.any():
            add("first_token_output_share", contrib[first, start or 0] / total[first])
        multi = ok & (keys >= 2) & (mean_nu > 0)
        add("output_norm_ratio", np.minimum(out_norm[multi] / total[multi], 1.0))
        add("attended_value_norm", total[multi] / mean_nu[multi])
    return {name: s / c for name, (s, c) in sums.items() if c}
