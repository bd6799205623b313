"""Orthogonal Procrustes alignment so a head's layout does not flip or spin relative to its neighbour."""

from __future__ import annotations

import numpy as np


def procrustes_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal R (rotation or reflection) minimising ||a R - b||_F for centred a, b of equal shape."""
    m = a.T.astype(np.float64) @ b.astype(np.float64)
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def align(layout: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate/reflect `layout` [n, k] onto `reference` [n, k] (same rows), keeping its scale.

    The result is centred on the reference's centroid; only rotation, reflection and translation are applied,
    so all distances inside the layout are preserved. Returns float32.
    """
    if layout.shape != reference.shape:
        raise ValueError(f"layout {layout.shape} and reference {reference.shape} must have the same shape")
    lay = layout.astype(np.float64)
    ref = reference.astype(np.float64)
    mu_l, mu_r = lay.mean(axis=0), ref.mean(axis=0)
    rot = procrustes_rotation(lay - mu_l, ref - mu_r)
    return ((lay - mu_l) @ rot + mu_r).astype(np.float32)
