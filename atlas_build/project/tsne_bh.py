"""t-SNE's repulsive forces by Barnes-Hut (van der Maaten 2014) for 3D layouts: openTSNE's space-partitioning tree
and traversal, with the tree in flat arrays (packed one row a cell for the traversal), an explicit stack instead of
recursion, and the points visited along a Z-order curve (the tree's own depth-first order) so that consecutive
points walk nearly the same cells (the traversal is bound by memory, not arithmetic).

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
def _build(emb, centre, com, side, count, first, head, nxt):
    """Insert every point as openTSNE's QuadTree does; returns the number of cells used (−1 when the arrays are too
    small) and the depth of the deepest cell. Each cell also lists the points that stopped in it (`head`, then
    `nxt` per point), moved with the mass when a leaf splits, for `_tree_order`."""
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
    head[0] = -1
    used = 1
    deepest = 0
    for i in range(emb.shape[0]):
        point = emb[i]
        node = 0
        depth = 0
        while True:
            if (first[node] < 0 and count[node] == 0) or _is_close(com, node, point, _CLOSE):
                _add_mass(com, count, node, point)
                nxt[i] = head[node]
                head[node] = i
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
                    head[child] = -1
                used += fan
                moved = first[node] + _child(centre, node, com[node])
                _add_mass(com, count, moved, com[node])
                head[moved] = head[node]
                head[node] = -1
            _add_mass(com, count, node, point)
            node = first[node] + _child(centre, node, point)
            depth += 1
            deepest = max(deepest, depth)
    return used, deepest


@numba.njit(nogil=True, cache=False)
def _tree_order(first, head, nxt, fan, n, stack):
    """The points in the tree's depth-first order, children in index order: a Z-order curve over the tree's own
    cells, so that consecutive points walk nearly the same cells (cheaper than sorting Morton codes)."""
    order = np.empty(n, np.int64)
    out = 0
    top = 0
    stack[0] = 0
    while top >= 0:
        node = stack[top]
        top -= 1
        i = head[node]
        while i >= 0:
            order[out] = i
            out += 1
            i = nxt[i]
        if first[node] >= 0:
            for c in range(fan - 1, -1, -1):
                top += 1
                stack[top] = first[node] + c
    return order


@numba.njit(nogil=True, cache=False)
def _pack(com, side, count, first, used):
    """The traversal's view of the first `used` cells, one row each: centre of mass (zero-padded to 3 axes), side²,
    count and first child, so that opening a cell reads one row, not four arrays."""
    tree = np.zeros((used, 6))
    for n in range(used):
        for d in range(com.shape[1]):
            tree[n, d] = com[n, d]
        tree[n, 3] = side[n] * side[n]
        tree[n, 4] = count[n]
        tree[n, 5] = first[n]
    return tree


@numba.njit(nogil=True, cache=False)
def _forces(emb, order, tree, grad, theta, dof, stack):
    """Add each point's unnormalised repulsion to `grad`, visiting the points in `order`; returns Σ q (summed in
    the points' own order). Empty cells are never pushed; a point's coordinates and force stay in registers (the
    same sums in the same order as openTSNE's traversal)."""
    dims = emb.shape[1]
    fan = 1 << dims
    theta2 = theta * theta  # side / √dist < θ without the root and the division
    unit = dof == 1.0
    sums = np.empty(emb.shape[0])
    for i in order:
        p0 = emb[i, 0]
        p1 = emb[i, 1] if dims > 1 else 0.0
        p2 = emb[i, 2] if dims > 2 else 0.0
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        sum_q = 0.0
        top = 0
        stack[0] = 0
        while top >= 0:
            node = stack[top]
            top -= 1
            c0 = tree[node, 0]
            c1 = tree[node, 1]
            c2 = tree[node, 2]
            first = int(tree[node, 5])
            t0 = c0 - p0
            t1 = c1 - p1
            t2 = c2 - p2
            if first < 0 and abs(t0) < _EPS and abs(t1) < _EPS and abs(t2) < _EPS:
                continue  # the point's own cell
            dist = _EPS + t0 * t0
            if dims > 1:
                dist += t1 * t1
            if dims > 2:
                dist += t2 * t2
            if first < 0 or tree[node, 3] < theta2 * dist:
                count = tree[node, 4]
                if unit:
                    q = 1.0 / (1.0 + dist)
                    sum_q += count * q
                    q = q * q
                else:
                    q = 1.0 / (1.0 + dist / dof) ** dof
                    sum_q += count * q
                    q = q ** ((dof + 1.0) / dof)
                g0 -= count * q * (p0 - c0)
                g1 -= count * q * (p1 - c1)
                g2 -= count * q * (p2 - c2)
                continue
            for c in range(fan - 1, -1, -1):  # popped in openTSNE's recursion order
                if tree[first + c, 4] > 0:
                    top += 1
                    stack[top] = first + c
        grad[i, 0] += g0
        if dims > 1:
            grad[i, 1] += g1
        if dims > 2:
            grad[i, 2] += g2
        sums[i] = sum_q
    total = 0.0
    for i in range(emb.shape[0]):
        total += sums[i]
    return total


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
    nxt = np.empty(n, np.int64)
    while True:
        centre, com = np.empty((cells, dims)), np.empty((cells, dims))
        side, count, first = np.empty(cells), np.empty(cells, np.int64), np.empty(cells, np.int64)
        head = np.empty(cells, np.int64)
        used, depth = _build(emb, centre, com, side, count, first, head, nxt)
        if used > 0:
            break
        cells *= 2
    own = np.zeros_like(emb)
    stack = np.empty((depth + 1) * (1 << dims) + 1, np.int64)
    tree = _pack(com, side, count, first, used)
    order = _tree_order(first, head, nxt, 1 << dims, n, stack)
    sum_q = _forces(emb, order, tree, own, float(theta), max(float(dof), 1e-8), stack)
    grad += own / (sum_q + _EPS)
    return float(sum_q)
