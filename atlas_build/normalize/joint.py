"""A head's joint point set and point identity, defined once for every stage.

The points of a head are the query of each point-carrying token, then the key of each, both in token order: with
m point tokens, point ``i < m`` is the query of the i-th point token and point ``m + i`` its key. `JointSet` carries
that order with the token rows the points come from, and `point_ids` gives the same ids per token for the files
readers join on (tokens.arrow's ``query_point``/``key_point``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """``x`` [2m, d]: queries then keys; ``token_rows`` [m]: the sample row (token) each query/key pair belongs to."""

    x: np.ndarray
    token_rows: np.ndarray

    @classmethod
    def of(cls, queries: np.ndarray, keys: np.ndarray, token_rows: np.ndarray | None = None) -> "JointSet":
        if queries.shape != keys.shape:
            raise ValueError(f"queries and keys must have one shape, got {queries.shape} and {keys.shape}")
        rows = np.arange(len(queries)) if token_rows is None else np.asarray(token_rows)
        return cls(np.concatenate([queries, keys]), rows)

    @property
    def m(self) -> int:
        """Number of point tokens (half the points)."""
        return len(self.token_rows)

    @property
    def queries(self) -> np.ndarray:
        return self.x[:self.m]

    @property
    def keys(self) -> np.ndarray:
        return self.x[self.m:]

    def halves(self, per_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split any per-point array of this set (coordinates, norms) into its query rows and key rows."""
        return halves(per_point)


def halves(per_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, key rows) of a per-point array in joint order."""
    if len(per_point) % 2:
        raise ValueError(f"a joint [queries; keys] array has an even number of rows, got {len(per_point)}")
    m = len(per_point) // 2
    return per_point[:m], per_point[m:]


def is_key(num_points: int) -> np.ndarray:
    """[2m] bool: which points are keys."""
    return np.arange(num_points) >= num_points // 2


def point_ids(has_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point ids per token (-1: no point): queries 0..m-1 then keys m..2m-1, both in token order."""
    mask = np.asarray(has_point, bool)
    rank = np.cumsum(mask) - 1
    m = int(mask.sum())
    return np.where(mask, rank, -1), np.where(mask, rank + m, -1)
