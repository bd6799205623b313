"""t-SNE's repulsive forces by Barnes-Hut (van der Maaten 2014) for 3D layouts: openTSNE's space-partitioning tree
and traversal, with the tree in flat arrays, an explicit stack instead of recursion, and the points visited along a
Z-order curve so that consecutive points walk nearly the same cells (the traversal is bound by memory, not
arithmetic).

Same tree (cells split in halves around their centre, a point within 1e-6 of a cell's centre of mass merged into
it, the root a cube over the points' bounding box), same opening test (cell side / distance < θ, compared squared)
and the same order of children, so the forces equal openTSNE's `estimate_negative_gradient_bh` up to rounding (a
test compares both).
"""

from __future__ import annotations

import numba
import numpy as np

_CLOSE = 1e-6  # openTSNE merges a point into a cell whose centre of mass is this near, in every coordinate
_EPS = float(np.finfo(np.float64).eps)


@numba.njit(nogil=True, cache=False)
def _is_close(com, node, point, eps):
    for d in range(point.shape[0]):
        if abs(com[node, d] - point[d]) >= eps:
            return False
    return True


@numba.njit(nogil=True, cache=False)
def _add_mass(com, count, node, point):
    for d in range(point.shape[0]):
        com[node, d] = (com[node, d] * count[node] + point[d]) / (count[node] + 1)
    count[node] += 1


@numba.njit(nogil=True, cache=False)
def _child(centre, node, point):
    idx = 0
    for d in range(point.shape[0]):
        if point[d] > centre[node, d]:
            idx |= 1 << d
    return idx


@numba.njit(nogil=True, cache=False)
def _build(emb, centre, com, side, count, first):
    """Insert every point as openTSNE's QuadTree does; returns the number of cells used (−1 when the arrays are too
    small) and the depth of the deepest cell."""
    dims = emb.shape[1]
    fan = 1 << dims
    lo = emb[0].copy()
    hi = emb[0].copy()
    for i in range(emb.shape[0]):
        for d in range(dims):
            lo[d] = min(lo[d], emb[i, d])
            hi[d] = max(hi[d], emb[i, d])
    length = 0.0
    for d in range(dims):
        centre[0, d] = (hi[d] + lo[d]) / 2
        com[0, d] = 0.0
        length = max(length, hi[d] - lo[d])
    side[0] = length
    count[0] = 0
    first[0] = -1
    used = 1
    deepest = 0
    for i in range(emb.shape[0]):
        point = emb[i]
        node = 0
        depth = 0
        while True:
            if (first[node] < 0 and count[node] == 0) or _is_close(com, node, point, _CLOSE):
                _add_mass(com, count, node, point)
                break
            if first[node] < 0:  # split the leaf: its mass moves into the child it falls in
                if used + fan > side.shape[0]:
                    return -1, deepest
                half = side[node] / 2
                first[node] = used
                for c in range(fan):
                    child = used + c
                    for d in range(dims):
                        offset = half / 2 if c & (1 << d) else -half / 2
                        centre[child, d] = centre[node, d] + offset
                        com[child, d] = 0.0
                    side[child] = half
                    count[child] = 0
                    first[child] = -1
                used += fan
                _add_mass(com, count, first[node] + _child(centre, node, com[node]), com[node])
            _add_mass(com, count, node, point)
            node = first[node] + _child(centre, node, point)
            depth += 1
            deepest = max(deepest, depth)
    return used, deepest


@numba.njit(nogil=True, cache=False)
def _forces(emb, order, com, side, count, first, grad, theta, dof, stack):
    """Add each point's unnormalised repulsion to `grad`, visiting the points in `order`; returns Σ q (summed in
    the points' own order)."""
    dims = emb.shape[1]
    fan = 1 << dims
    theta2 = theta * theta  # side / √dist < θ without the root and the division
    sums = np.empty(emb.shape[0])
    for i in order:
        point = emb[i]
        sum_q = 0.0
        top = 0
        stack[0] = 0
        while top >= 0:
            node = stack[top]
            top -= 1
            if count[node] == 0 or (first[node] < 0 and _is_close(com, node, point, _EPS)):
                continue
            dist = _EPS
            for d in range(dims):
                t = com[node, d] - point[d]
                dist += t * t
            if first[node] < 0 or side[node] * side[node] < theta2 * dist:
                if dof != 1.0:
                    q = 1.0 / (1.0 + dist / dof) ** dof
                    sum_q += count[node] * q
                    q = q ** ((dof + 1.0) / dof)
                else:
                    q = 1.0 / (1.0 + dist)
                    sum_q += count[node] * q
                    q = q * q
                for d in range(dims):
                    grad[i, d] -= count[node] * q * (point[d] - com[node, d])
                continue
            for c in range(fan - 1, -1, -1):  # popped in openTSNE's recursion order
                top += 1
                stack[top] = first[node] + c
        sums[i] = sum_q
    total = 0.0
    for i in range(emb.shape[0]):
        total += sums[i]
    return total


@numba.njit(nogil=True, cache=False)
def _morton_codes(emb, lo, span):
    """Each point's Z-order code over the bounding box, 10 bits a dimension."""
    dims = emb.shape[1]
    codes = np.zeros(emb.shape[0], np.int64)
    for i in range(emb.shape[0]):
        code = 0
        for d in range(dims):
            cell = min(int((emb[i, d] - lo[d]) / span[d] * 1024.0), 1023)
            for bit in range(10):
                code |= ((cell >> bit) & 1) << (bit * dims + d)
        codes[i] = code
    return codes


def _morton_order(emb: np.ndarray) -> np.ndarray:
    """The points sorted along a Z-order curve over their bounding box, so that consecutive points walk nearly the
    same cells of the tree."""
    lo, hi = emb.min(axis=0), emb.max(axis=0)
    return np.argsort(_morton_codes(emb, lo, np.where(hi > lo, hi - lo, 1.0)), kind="stable")


def repulsion(emb: np.ndarray, grad: np.ndarray, *, theta: float = 0.5, dof: float = 1.0) -> float:
    """Subtract t-SNE's normalised repulsive forces from `grad` [n, dims] in place and return the normaliser Σ q,
    as openTSNE's `estimate_negative_gradient_bh` does on a fresh `QuadTree` (dims 1–3)."""
    emb = np.ascontiguousarray(emb, dtype=np.float64)
    n, dims = emb.shape
    if not 1 <= dims <= 3 or grad.shape != emb.shape:
        raise ValueError(f"Barnes-Hut here is for 1 to 3 dimensions, got {emb.shape} and a gradient of {grad.shape}")
    if n == 0:
        return 0.0
    if not np.isfinite(emb).all():
        raise ValueError("the layout has non-finite coordinates: t-SNE diverged or started from NaN")
    cells = 4 * (1 << dims) * max(n, 1) + 1
    while True:
        centre, com = np.empty((cells, dims)), np.empty((cells, dims))
        side, count, first = np.empty(cells), np.empty(cells, np.int64), np.empty(cells, np.int64)
        used, depth = _build(emb, centre, com, side, count, first)
        if used > 0:
            break
        cells *= 2
    own = np.zeros_like(emb)
    stack = np.empty((depth + 1) * (1 << dims) + 1, np.int64)
    sum_q = _forces(emb, _morton_order(emb), com, side, count, first, own, float(theta), max(float(dof), 1e-8),
                    stack)
    grad += own / (sum_q + _EPS)
    return float(sum_q)
