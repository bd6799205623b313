"""Orthogonal Procrustes alignment so a head's layout does not flip or spin relative to its neighbour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def procrustes_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal R (rotation or reflection) minimising ||a R - b||_F for centred a, b of equal shape."""
    m = a.T.astype(np.float64) @ b.astype(np.float64)
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def align(layout: np.ndarray, reference: np.ndarray, splits: Sequence[int] = ()) -> np.ndarray:
    """Rotate/reflect `layout` [n, k] onto `reference` [n, k] (same rows), keeping its scale.

    The result is centred on the reference's centroid; only rotation, reflection and translation are applied,
    so all distances inside the layout are preserved. ``splits``: axis counts at which the rotation is cut into
    blocks (``(2,)``: axes 0-1 and axis 2 turn on their own), so a nested layout's axes stay its own. Returns
    float32.
    """
    if layout.shape != reference.shape:
        raise ValueError(f"layout {layout.shape} and reference {reference.shape} must have the same shape")
    lay = layout.astype(np.float64)
    ref = reference.astype(np.float64)
    mu_l, mu_r = lay.mean(axis=0), ref.mean(axis=0)
    rot = np.zeros((lay.shape[1], lay.shape[1]))
    edges = [0, *sorted(k for k in set(splits) if 0 < k < lay.shape[1]), lay.shape[1]]
    for a, b in zip(edges[:-1], edges[1:]):
        rot[a:b, a:b] = procrustes_rotation(lay[:, a:b] - mu_l[a:b], ref[:, a:b] - mu_r[a:b])
    return ((lay - mu_l) @ rot + mu_r).astype(np.float32)


def nested_layouts(heads: Sequence[Mapping[str, np.ndarray]]) -> dict[str, str]:
    """The layouts whose coordinates are, in every head, the first axes of another layout's (PCA in 2D is the first
    two components of PCA in 3D): layout → the layout with the most axes that holds them."""
    if not heads:
        return {}
    dims = {name: coords.shape[1] for name, coords in heads[0].items()}
    out = {}
    for name, d in dims.items():
        hosts = sorted((n for n in dims if dims[n] > d), key=lambda n: -dims[n])
        host = next((n for n in hosts if all(np.array_equal(h[name], h[n][:, :d]) for h in heads)), None)
        if host is not None:
            out[name] = host
    return out


def align_head(head: Mapping[str, np.ndarray], previous: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layout of ``head`` rotated/reflected onto the same layout of ``previous`` (kept as it is when missing
    there or of another shape). A layout nested in another (`nested_layouts`) stays the first axes of its host: the
    host turns in blocks cut at the nested layouts' axis counts, and the nested layout is its host's first axes."""
    nested = nested_layouts([head])
    out = {}
    for lay, emb in head.items():
        if lay in nested:
            continue
        ref = previous.get(lay)
        splits = [head[n].shape[1] for n, host in nested.items() if host == lay]
        out[lay] = align(emb, ref, splits) if ref is not None and ref.shape == emb.shape else np.asarray(emb)
    for lay, host in nested.items():
        out[lay] = np.ascontiguousarray(out[host][:, :head[lay].shape[1]])
    return {lay: out[lay] for lay in head}
