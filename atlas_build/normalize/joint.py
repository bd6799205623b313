"""A head's joint point set and point identity, defined once for every stage.

The points of a head are the queries of its query tokens, then the keys of its key tokens, both in token order:
with m query tokens, point ``i < m`` is the query of the i-th query token and point ``m + j`` the key of the j-th
key token. For self-attention both are the point-carrying tokens (so token i's key is point m + i); for
cross-attention the query tokens are the query side's (decoder) and the key tokens the key side's (encoder).
`JointSet` carries that order with the token rows the points come from, and `point_ids` gives the same ids per
token for the files readers join on (tokens.arrow's ``query_point``/``key_point``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """``x`` [m + m_k, d]: queries then keys; ``token_rows`` [m]: the sample row (token) of each query point;
    ``key_rows`` [m_k]: that of each key point (the same rows for self-attention)."""

    x: np.ndarray
    token_rows: np.ndarray
    key_rows: np.ndarray

    @classmethod
    def of(cls, queries: np.ndarray, keys: np.ndarray, token_rows: np.ndarray | None = None,
           key_rows: np.ndarray | None = None) -> "JointSet":
        if key_rows is None and queries.shape != keys.shape:
            raise ValueError(f"queries and keys must have one shape, got {queries.shape} and {keys.shape}")
        if queries.shape[1:] != keys.shape[1:]:
            raise ValueError(f"queries and keys must have one width, got {queries.shape} and {keys.shape}")
        rows = np.arange(len(queries)) if token_rows is None else np.asarray(token_rows)
        krows = rows if key_rows is None else np.asarray(key_rows)
        if len(rows) != len(queries) or len(krows) != len(keys):
            raise ValueError("one token row per query and per key")
        return cls(np.concatenate([queries, keys]), rows, krows)

    @property
    def m(self) -> int:
        """Number of query points (the id of the first key point)."""
        return len(self.token_rows)

    @property
    def queries(self) -> np.ndarray:
        return self.x[:self.m]

    @property
    def keys(self) -> np.ndarray:
        return self.x[self.m:]

    def halves(self, per_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split any per-point array of this set (coordinates, norms) into its query rows and key rows."""
        if len(per_point) != len(self.x):
            raise ValueError(f"a per-point array of this set has {len(self.x)} rows, got {len(per_point)}")
        return per_point[:self.m], per_point[self.m:]


def halves(per_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, key rows) of a per-point array in joint order of a self-attention set (m queries, m keys)."""
    if len(per_point) % 2:
        raise ValueError(f"a joint [queries; keys] array has an even number of rows, got {len(per_point)}")
    m = len(per_point) // 2
    return per_point[:m], per_point[m:]


def is_key(num_points: int, num_queries: int | None = None) -> np.ndarray:
    """[num_points] bool: which points are keys (the first ``num_queries``, default half, are queries)."""
    m = num_points // 2 if num_queries is None else num_queries
    return np.arange(num_points) >= m


def point_ids(has_point: np.ndarray, has_key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Point ids per token (-1: no point): queries 0..m-1 then keys m.., both in token order. ``has_point``: the
    tokens with a query point (and, without ``has_key``, a key point too); ``has_key``: those with a key point."""
    mask = np.asarray(has_point, bool)
    kmask = mask if has_key is None else np.asarray(has_key, bool)
    m = int(mask.sum())
    return np.where(mask, np.cumsum(mask) - 1, -1), np.where(kmask, np.cumsum(kmask) - 1 + m, -1)
