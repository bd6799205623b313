"""Related heads: which heads of a model attend alike on the same sentences.

Every head keeps a compact *attention signature*: its attention entries on one fixed subset of sentences, at most
``SIGNATURE_ENTRIES`` floats. The subset is chosen by a seeded hash of each sentence's content (its token ids), so it
is the same for every head of a model and does not depend on the order of the sentences. Two heads' similarity is
the Pearson correlation of their signatures; `related_heads` ranks, from one correlation matrix over all heads of a
model, the most similar other heads of each head.

Causal models use the lower triangle (diagonal included) of rows ≥ 1 — row 0 and the upper triangle are fixed (1 / 0)
and would inflate every correlation; bidirectional models use whole rows. Each entry is taken relative to uniform
attention over the keys its row may see (a_ij − 1/allowed_i): raw entries share the 1/allowed_i row structure, which
alone correlates any two heads (above 0.99 for the near-uniform heads of a random model). Cross-attention heads use
the query-side rows over the key-side columns (the only entries the model computes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..fsutil import round6

__all__ = ["SIGNATURE_ENTRIES", "SIGNATURE_SENTENCES", "TOP_RELATED", "SignaturePlan", "attention_signature",
           "head_similarity", "related_heads", "signature_plan", "similarity_matrix"]

SIGNATURE_SENTENCES = 48   #: at most this many sentences (images) per signature
SIGNATURE_ENTRIES = 65_536  #: at most about this many attention entries per signature (float32: 256 KB)
SIGNATURE_SEED = 0         #: seed of the content hash that picks the sentences
TOP_RELATED = 5            #: related heads listed per head


@dataclass(frozen=True)
class SignaturePlan:
    """Which attention entries make a signature: (sentence id, query rows) in signature order."""

    sentences: tuple[tuple[int, tuple[int, ...]], ...]
    causal: bool
    key_starts: dict[int, int] | None = None  #: cross-attention: sentence id → first key-side position


def _content_key(seed: int, content: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    h.update(np.int64(seed).tobytes())
    h.update(np.ascontiguousarray(content, dtype=np.int64).tobytes())
    return h.digest()


def _rows(n: int, causal: bool, share: int) -> tuple[int, ...]:
    """Query rows of an n-token sentence, evenly thinned so their entries fit in about `share`."""
    rows = np.arange(1 if causal else 0, n)
    entries = int((rows + 1).sum()) if causal else rows.size * n
    if rows.size and entries > share:
        m = max(1, rows.size * share // entries)
        rows = np.unique(rows[np.linspace(0, rows.size - 1, m).round().astype(int)])
    return tuple(int(r) for r in rows)


def signature_plan(sentence_id: np.ndarray, position: np.ndarray, content: np.ndarray | None, causal: bool, *,
                   max_sentences: int = SIGNATURE_SENTENCES, max_entries: int = SIGNATURE_ENTRIES,
                   seed: int = SIGNATURE_SEED, key_starts: Mapping[int, int] | None = None) -> SignaturePlan:
    """Pick the signature's sentences and rows from the token sample (independent of sentence order).

    ``content`` is each token's vocabulary id (None for image patches: the sentence id is the content then).
    Sentences are ranked by a seeded hash of (length, content in position order); the first ``max_sentences``
    of at least 2 tokens are kept in that order, and long ones are thinned to evenly spaced rows so the whole
    signature holds about ``max_entries`` entries.
    """
    sid, pos = np.asarray(sentence_id), np.asarray(position)
    order = np.lexsort((pos, sid))
    sid, pos = sid[order], pos[order]
    cont = sid if content is None else np.asarray(content)[order]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], sid.size]
    ranked = sorted((_content_key(seed, np.r_[e - s, cont[s:e]]), int(sid[s]), int(e - s))
                    for s, e in zip(starts, ends) if e - s >= 2)[:max_sentences]
    share = max_entries // max(len(ranked), 1)
    if key_starts is not None:  # cross: query-side rows only, each of n − start entries
        starts = {s: int(key_starts[s]) for _, s, _ in ranked}
        return SignaturePlan(tuple((s, _rows(starts[s], False, share * starts[s] // max(n - starts[s], 1)))
                                   for _, s, n in ranked), False, starts)
    return SignaturePlan(tuple((s, _rows(n, causal, share)) for _, s, n in ranked), causal)


def attention_signature(attention: Mapping[int, np.ndarray], plan: SignaturePlan) -> np.ndarray:
    """float32 [entries]: the head's attention entries named by `plan`, minus uniform attention over each row's
    allowed keys (non-finite entries count as 0)."""
    parts = []
    for sid, rows in plan.sentences:
        a = np.nan_to_num(np.asarray(attention[sid], np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if plan.key_starts is not None:
            start = plan.key_starts[sid]
            parts.append((a[list(rows), start:] - 1.0 / max(a.shape[1] - start, 1)).ravel())
        elif plan.causal:
            parts.extend(a[r, : r + 1] - 1.0 / (r + 1) for r in rows)
        else:
            parts.append((a[list(rows)] - 1.0 / a.shape[1]).ravel())
    return (np.concatenate(parts) if parts else np.zeros(0)).astype(np.float32)


def similarity_matrix(signatures: Sequence[np.ndarray]) -> np.ndarray:
    """[H, H] Pearson correlations of equally long signatures; NaN rows/columns for constant signatures."""
    if not len(signatures):
        return np.zeros((0, 0))
    x = np.stack([np.asarray(s, np.float64) for s in signatures])
    x = x - x.mean(axis=1, keepdims=True)
    nrm = np.linalg.norm(x, axis=1)
    z = x / np.where(nrm > 0, nrm, 1.0)[:, None]
    with threadpool_limits(limits=1, user_api="blas"):  # the same sums whatever the thread count
        sim = np.clip(z @ z.T, -1.0, 1.0)
    sim[(nrm <= 0)[:, None] | (nrm <= 0)[None, :]] = np.nan
    return sim


def head_similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Pearson correlation of two signatures (NaN if either is constant)."""
    return float(similarity_matrix([sig_a, sig_b])[0, 1])


def related_heads(heads: Sequence[tuple[int, int]], signatures: Sequence[np.ndarray | None],
                  top: int = TOP_RELATED) -> list[list[dict]]:
    """For each (layer, head), its `top` most similar other heads as {"layer", "head", "similarity"}.

    Sorted by similarity (6 significant digits) descending, then (layer, head). Heads without a signature, or
    whose signature has another length than the most common one, or is constant, get and appear in no list.
    """
    lengths = [np.size(s) for s in signatures if s is not None]
    if not lengths:
        return [[] for _ in heads]
    common = max(set(lengths), key=lambda n: (lengths.count(n), n))
    use = [i for i, s in enumerate(signatures) if s is not None and np.size(s) == common]
    sim = similarity_matrix([signatures[i] for i in use])
    out: list[list[dict]] = [[] for _ in heads]
    for a, i in enumerate(use):
        cands = [(-round6(sim[a, b]), heads[j]) for b, j in enumerate(use) if b != a and np.isfinite(sim[a, b])]
        out[i] = [{"layer": int(lh[0]), "head": int(lh[1]), "similarity": 0.0 - neg} for neg, lh in sorted(cands)[:top]]
    return out
