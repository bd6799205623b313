"""t-SNE's repulsive forces in 2D by FFT-accelerated interpolation (Linderman et al. 2019, "FIt-SNE"), the same
method, grid and interpolation nodes as openTSNE's `estimate_negative_gradient_fft_2d`, in fewer, larger steps.

The points' charges are spread onto an even grid of Lagrange interpolation nodes (`n_interpolation_points` per box,
boxes of `ints_in_interval` units, at least `min_num_intervals` a side, rounded up to an FFT-friendly count), the
grid is convolved with the Student-t kernel by real FFTs of the zero-padded grid, and the potentials are
interpolated back. openTSNE spends about two thirds of a call outside the FFTs: it evaluates and transforms the
kernel in Python-level loops, copies each charge term in and out of its FFT buffer, and transforms the charge "1"
twice when dof ≠ 1. Here spreading and gathering are numba loops over the points, the charges are spread straight
into the padded buffers, and the charge "1" is transformed once for both kernels. The result equals openTSNE's up to
rounding (a test compares both). Single-precision FFTs (0.6 of the time) were measured and dropped: they move a
force by only ~5e-6 of its size, yet the 2D layouts of all four real heads tried ended 0.0006-0.0025 lower in
trustworthiness@10 (docs/reference/projections.md#kernels).
"""

from __future__ import annotations

import numba
import numpy as np

_FRIENDLY = np.array(sorted({2 ** a * 3 ** b * 5 ** c * 7 ** d * m
                             for a in range(11) for b in range(7) for c in range(5) for d in range(4)
                             for m in (1, 11, 13)
                             if 20 <= 2 ** a * 3 ** b * 5 ** c * 7 ** d * m <= 1000}))


def box_count(span: float, min_num_intervals: int, ints_in_interval: float) -> int:
    """Boxes a side: span / ints_in_interval, at least min_num_intervals, rounded up to the next count whose prime
    factors are 2, 3, 5, 7 and at most one of 11 and 13 (fast FFT sizes; openTSNE's table), at most 1,000."""
    n = int(max(min_num_intervals, span / ints_in_interval))
    i = int(np.searchsorted(_FRIENDLY, n))
    return int(_FRIENDLY[i]) if i < len(_FRIENDLY) else 1000


@numba.njit(nogil=True, cache=False)
def _kernels(n_nodes, spacing, dof, sq, plain):
    """Student-t kernels at the node offsets, embedded in a circulant grid of side 2 · n_nodes: `sq` is
    (1 + r²/dof)^−(dof+1), `plain` (1 + r²/dof)^−dof (unused when dof = 1)."""
    for i in range(n_nodes):
        for j in range(i + 1):
            r2 = (i * spacing) ** 2 + (j * spacing) ** 2
            if dof != 1.0:
                base = 1.0 + r2 / dof
                p = base ** -dof
                s = base ** -(dof + 1.0)
            else:
                base = 1.0 + r2
                p = 1.0 / base
                s = p * p
            for a, b in ((i, j), (j, i)):
                for ra in (n_nodes + a, n_nodes - a):
                    for cb in (n_nodes + b, n_nodes - b):
                        sq[ra, cb] = s
                        plain[ra, cb] = p


@numba.njit(nogil=True, cache=False)
def _weights(emb, coord_min, box_width, n_boxes, p, box, wx, wy):
    """Each point's box (x and y index) and its Lagrange weights at the box's `p` nodes (at (k + ½) / p)."""
    h = 1.0 / p
    for i in range(emb.shape[0]):
        for axis in range(2):
            b = int((emb[i, axis] - coord_min) / box_width)
            if b >= n_boxes:
                b = n_boxes - 1
            box[i, axis] = b
            t = (emb[i, axis] - (b * box_width + coord_min)) / box_width
            out = wx if axis == 0 else wy
            for j in range(p):
                num = 1.0
                den = 1.0
                for k in range(p):
                    if k != j:
                        num *= t - (k + 0.5) * h
                        den *= (j - k) * h
                out[i, j] = num / den


@numba.njit(nogil=True, cache=False)
def _spread(emb, box, wx, wy, p, charges, grid):
    """Add each point's charges (1, x, y, and x² + y² when `charges` = 4) at its box's nodes, weighted by the
    interpolation weights, into the top-left quadrant of the padded `grid` [charges, 2n, 2n]."""
    for i in range(emb.shape[0]):
        x, y = emb[i, 0], emb[i, 1]
        r2 = x * x + y * y
        for a in range(p):
            row = box[i, 0] * p + a
            for b in range(p):
                col = box[i, 1] * p + b
                w = wx[i, a] * wy[i, b]
                grid[0, row, col] += w
                grid[1, row, col] += w * x
                grid[2, row, col] += w * y
                if charges == 4:
                    grid[3, row, col] += w * r2


@numba.njit(nogil=True, cache=False)
def _gather(emb, box, wx, wy, p, n_nodes, pot, grad, dof):
    """Interpolate the potentials (read at offset n_nodes of the padded grids) back to the points, then subtract
    the normalised repulsive forces from `grad`; returns Z = Σ_{i≠j} q_ij."""
    n = emb.shape[0]
    phi = np.zeros((n, 4))
    for i in range(n):
        for a in range(p):
            row = n_nodes + box[i, 0] * p + a
            for b in range(p):
                col = n_nodes + box[i, 1] * p + b
                w = wx[i, a] * wy[i, b]
                for t in range(4):
                    phi[i, t] += w * pot[t, row, col]
    z = 0.0
    for i in range(n):
        if dof != 1.0:
            z += phi[i, 3]
        else:
            y1, y2 = emb[i, 0], emb[i, 1]
            z += (1.0 + y1 * y1 + y2 * y2) * phi[i, 0] - 2.0 * (y1 * phi[i, 1] + y2 * phi[i, 2]) + phi[i, 3]
    z -= n
    eps = np.finfo(np.float64).eps
    for i in range(n):
        grad[i, 0] -= (emb[i, 0] * phi[i, 0] - phi[i, 1]) / (z + eps)
        grad[i, 1] -= (emb[i, 1] * phi[i, 0] - phi[i, 2]) / (z + eps)
    return z


def repulsion_2d(emb: np.ndarray, grad: np.ndarray, *, n_interpolation_points: int = 3, min_num_intervals: int = 10,
                 ints_in_interval: float = 1.0, dof: float = 1.0) -> float:
    """Subtract t-SNE's normalised repulsive forces from `grad` [n, 2] in place and return the normaliser
    Z = Σ_{i≠j} q_ij, as openTSNE's `estimate_negative_gradient_fft_2d` does (same arguments)."""
    if emb.ndim != 2 or emb.shape[1] != 2 or grad.shape != emb.shape:
        raise ValueError(f"the FFT repulsion is for 2D layouts, got {emb.shape} and a gradient of {grad.shape}")
    emb = np.ascontiguousarray(emb, dtype=np.float64)
    if not np.isfinite(emb).all():
        raise ValueError("the layout has non-finite coordinates: t-SNE diverged or started from NaN")
    p = int(n_interpolation_points)
    coord_min, coord_max = float(emb.min()), float(emb.max())
    n_boxes = box_count(coord_max - coord_min, min_num_intervals, ints_in_interval)
    # points all in one place (openTSNE divides by zero here): a grid so small that the kernel is flat across it
    # gives their zero forces and Z = n(n − 1)
    box_width = (coord_max - coord_min) / n_boxes if coord_max > coord_min else 1e-9
    n_nodes = n_boxes * p
    side = 2 * n_nodes

    sq, plain = np.zeros((side, side)), np.zeros((side, side))
    _kernels(n_nodes, box_width / p, float(dof), sq, plain)
    n = len(emb)
    box = np.empty((n, 2), dtype=np.int64)
    wx, wy = np.empty((n, p)), np.empty((n, p))
    _weights(emb, coord_min, box_width, n_boxes, p, box, wx, wy)
    charges = 3 if dof != 1 else 4
    grid = np.zeros((charges, side, side))
    _spread(emb, box, wx, wy, p, charges, grid)

    spectrum = np.fft.rfft2(grid, axes=(-2, -1))
    # both kernels are even in both axes, so their transforms are real
    products = np.empty((4,) + spectrum.shape[1:], dtype=spectrum.dtype)
    sq_hat = np.fft.rfft2(sq).real
    np.multiply(spectrum[:3], sq_hat, out=products[:3])
    np.multiply(spectrum[3 if dof == 1 else 0], sq_hat if dof == 1 else np.fft.rfft2(plain).real, out=products[3])
    pot = np.fft.irfft2(products, s=(side, side), axes=(-2, -1))
    return float(_gather(emb, box, wx, wy, p, n_nodes, pot, grad, float(dof)))
