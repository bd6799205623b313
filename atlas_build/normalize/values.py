"""The value set of a key/value head: what the value view lays out, with the layouts of the query/key view.

A head's output for query i is o_i = Σ_j A_ij v_j with Σ_j A_ij = 1, so a vector added to every value shifts every
output by that same vector and tells tokens apart in nothing: the value set is centred (v_j − mean v over the point
tokens) before the layout's metric sees it. Unlike queries and keys there is no second free parameter (no scaling:
the output norm is what the next layer reads). One point per point-carrying token, in token order; under
grouped-query attention the query heads of one key/value head share its value set, so it is laid out once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..project.layouts import LAYOUTS

__all__ = ["FALLBACK_LAYOUT", "value_layout_names", "value_set"]

#: The value layout when the manifest lists no 2D layout the value set can use.
FALLBACK_LAYOUT = "pca-2d"


def value_layout_names(layouts: Sequence[str]) -> tuple[str, ...]:
    """The value view's layouts: the 2D ones of `layouts` that lay out a point set alone (faithful-2d reads the
    query–key attention edges, which values have not), in manifest order; `FALLBACK_LAYOUT` when none is left.
    3D layouts are left out to bound the cost (docs/reference/projections.md)."""
    names = tuple(n for n in dict.fromkeys(layouts) if LAYOUTS[n].dims == 2 and LAYOUTS[n].method != "faithful")
    return names or (FALLBACK_LAYOUT,)


def value_set(values: np.ndarray, token_rows: np.ndarray | None = None) -> np.ndarray:
    """[m, dv] float32: the value vectors of the point tokens (`token_rows`; None = every token), centred."""
    v = np.asarray(values, np.float64)
    if token_rows is not None:
        v = v[np.asarray(token_rows)]
    if v.ndim != 2 or not len(v):
        raise ValueError(f"values must be a non-empty [m, dv] array, got shape {v.shape}")
    return (v - v.mean(axis=0)).astype(np.float32)
