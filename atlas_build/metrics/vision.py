"""Vision-transformer head measures: how strongly a head's 2D layout sorts probe patches by an attribute, and how
far its attention reaches across the patch grid.

Patch attributes (per token; NaN where not measured), each over its own probe family only:

| attribute | probes | value | difference |
|---|---|---|---|
| ``hue`` | ``hue-a*`` | chroma-weighted circular mean hue of the patch's pixels, in [0, 1) | circular, period 1 |
| ``brightness`` | ``brightness-a*`` | mean Rec. 601 luma of the patch's pixels, in [0, 1] | absolute |
| ``grating_frequency`` | ``grating-f*-a*`` | log2 of the grating's cycles per image side | absolute |
| ``grating_angle`` | ``grating-f*-a*`` | the grating's angle in degrees | circular, period 180 |

Hue and brightness are computed as the site's "mean hue"/"mean brightness" colourings compute them (images.js).

**Sorting score** (`neighbour_agreement`): 1 − mean |Δattr| between each point and its k nearest layout neighbours
÷ mean |Δattr| between random pairs (seeded). Neighbours and random pairs are taken from *other images* only:
patches of one image are spatial neighbours with near-equal hue or brightness, and every patch of a grating has the
grating's frequency and angle, so a head that merely keeps each image together would otherwise score high.
≈ 1: the layout orders patches by the attribute across images; ≈ 0: no more than chance. Query and key points
are scored separately (a query's nearest point is often its own key) and averaged.

**Attention distance** (`attention_distance`): attention-weighted mean Euclidean distance, in patch-grid units,
from each query patch to the key patches, with CLS/register tokens dropped on both sides and each row
re-normalised over the patch keys.

`head_vision` gives a head's full ``vision`` record (per 2D layout); `vision_metrics` its flat summary
(``<attribute>_sorting`` = mean over the layouts) for the head's ``metrics``. Both are computed with the head's
other scores (`pipeline.heads.run_head`); the attention distance is the ``mean_distance`` score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from ..datasets.patches import patch_grid
from ..fsutil import round6
from ..normalize.joint import halves
from ..datasets.probes import probe_params

if TYPE_CHECKING:
    from ..capture.store import CaptureResult

__all__ = ["VISION_ATTRIBUTES", "PatchAttributes", "patch_means", "token_attributes", "circular_difference",
           "neighbour_agreement", "layout_sorting", "attention_distance", "head_vision",
           "vision_metrics", "sorting_metric", "capture_patch_attributes"]

VISION_ATTRIBUTES = ("hue", "brightness", "grating_frequency", "grating_angle")
PERIODS: dict[str, float | None] = {"hue": 1.0, "brightness": None, "grating_frequency": None,
                                    "grating_angle": 180.0}
NEIGHBOURS = 10
RANDOM_PAIRS = 20_000
GREY_CHROMA = 4.0 / 255.0  # mean chroma vector shorter than this: the patch has no hue (as in images.js)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PatchAttributes:
    """Per-token attributes of an image model's capture."""

    image_id: np.ndarray  # [N] image ("sentence") id of each token
    values: dict[str, np.ndarray]  # attribute -> [N] float, NaN where not measured
    grids: dict[int, tuple[np.ndarray, np.ndarray]]  # image id -> (patch_row, patch_col) in position order


def _hue_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV hue in [0, 1) and chroma in [0, 1] of float RGB in [0, 1] (shape [..., 3])."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, c = rgb.max(axis=-1), rgb.max(axis=-1) - rgb.min(axis=-1)
    safe = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, np.mod((g - b) / safe, 6.0), np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    return np.where(c > 0, h / 6.0, 0.0), c


def patch_means(picture: np.ndarray, patch_size: tuple[int, int],
                grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(mean hue, mean brightness), each [rows, cols], of the patches of an H x W x 3 uint8 picture.

    Hue is the chroma-weighted circular mean (NaN when the mean chroma vector is shorter than ``GREY_CHROMA``),
    brightness the mean Rec. 601 luma, both in [0, 1]."""
    (ph, pw), (rows, cols) = patch_size, grid
    px = np.asarray(picture, np.float64)[:rows * ph, :cols * pw, :3] / 255.0
    h, c = _hue_chroma(px)

    def blocks(a: np.ndarray) -> np.ndarray:
        return a.reshape(rows, ph, cols, pw).mean(axis=(1, 3))

    hx, hy = blocks(c * np.cos(2 * np.pi * h)), blocks(c * np.sin(2 * np.pi * h))
    hue = np.where(np.hypot(hx, hy) > GREY_CHROMA, np.mod(np.arctan2(hy, hx) / (2 * np.pi), 1.0), np.nan)
    return hue, blocks(px @ np.asarray(LUMA))


def token_attributes(names: Mapping[int, str], pictures: Mapping[int, np.ndarray], image_id: np.ndarray,
                     patch_row: np.ndarray, patch_col: np.ndarray,
                     patch_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per-token attribute columns (see the module docstring) from each image's name and fitted picture."""
    image_id, row, col = (np.asarray(a, np.int64) for a in (image_id, patch_row, patch_col))
    out = {a: np.full(len(image_id), np.nan) for a in VISION_ATTRIBUTES}
    for iid, name in sorted(names.items()):
        p = probe_params(name)
        sel = np.flatnonzero((image_id == iid) & (row >= 0) & (col >= 0))
        if p is None or not len(sel):
            continue
        if p.family in ("hue", "brightness"):
            picture = pictures[iid]
            hue, brightness = patch_means(picture, patch_size, patch_grid(picture.shape[:2], patch_size))
            out[p.family][sel] = (hue if p.family == "hue" else brightness)[row[sel], col[sel]]
        elif p.family == "gratings":
            out["grating_frequency"][sel] = np.log2(p.freq)
            out["grating_angle"][sel] = float(p.angle)
    return out


def circular_difference(a: np.ndarray, b: np.ndarray, period: float | None) -> np.ndarray:
    """|a − b|, or the shorter way round a circle of ``period`` (e.g. 1 for hue, 180 for a grating's angle)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return d if period is None else np.minimum(np.mod(d, period), period - np.mod(d, period))


def neighbour_agreement(coords: np.ndarray, values: np.ndarray, groups: np.ndarray | None = None, *,
                        k: int = NEIGHBOURS, period: float | None = None, pairs: int = RANDOM_PAIRS,
                        seed: int = 0) -> float | None:
    """1 − mean |Δvalue| over each point's k nearest layout neighbours ÷ mean |Δvalue| over random pairs.

    Points with a non-finite value are left out. With ``groups``, neighbours and random pairs are drawn from
    other groups only (otherwise any other point). None when too few points, or all values equal."""
    values = np.asarray(values, np.float64)
    coords = np.asarray(coords, np.float64)
    keep = np.isfinite(values) & np.isfinite(coords).all(axis=1)
    x, v = coords[keep], values[keep]
    g = np.arange(len(v)) if groups is None else np.asarray(groups)[keep]
    n = len(v)
    if n < 2:
        return None
    if n - int(np.unique(g, return_counts=True)[1].max()) < k:
        return None
    idx = _self_excluded(x, k) if groups is None else _other_group(x, g, k)
    near = float(circular_difference(v[:, None], v[idx], period).mean())
    rng = np.random.default_rng(seed)
    i, j = rng.integers(n, size=pairs), rng.integers(n, size=pairs)
    diff = g[i] != g[j]
    baseline = float(circular_difference(v[i[diff]], v[j[diff]], period).mean()) if diff.any() else 0.0
    return 1.0 - near / baseline if baseline > 0 else None


def _self_excluded(x: np.ndarray, k: int) -> np.ndarray:
    """[n, k] indices of each point's k nearest other points."""
    n = len(x)
    _, idx = cKDTree(x).query(x, k=k + 1)
    idx = idx.reshape(n, k + 1)
    drop = idx == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True  # self not among them (duplicate points): drop the farthest
    return idx[~drop].reshape(n, k)


def _other_group(x: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """[n, k] indices of each point's k nearest points of other groups (one tree per group's complement)."""
    idx = np.empty((len(x), k), np.int64)
    for gid in np.unique(g):
        inside = np.flatnonzero(g == gid)
        others = np.flatnonzero(g != gid)
        _, j = cKDTree(x[others]).query(x[inside], k=k)
        idx[inside] = others[j.reshape(len(inside), k)]
    return idx


def layout_sorting(coords: np.ndarray, values: np.ndarray, groups: np.ndarray, *, period: float | None = None,
                   k: int = NEIGHBOURS, seed: int = 0) -> float | None:
    """`neighbour_agreement` of the query points (rows 0..N-1 of a joint [Q; K] layout) and of the key points
    (rows N..2N-1), averaged; ``values`` and ``groups`` are per token [N]."""
    n = len(values)
    if len(coords) != 2 * n:
        raise ValueError(f"a joint [Q; K] layout of {n} tokens has {2 * n} rows, got {len(coords)}")
    scores = [neighbour_agreement(part, values, groups, k=k, period=period, seed=seed) for part in halves(coords)]
    found = [s for s in scores if s is not None]
    return float(np.mean(found)) if found else None


def attention_distance(attention: np.ndarray, patch_row: np.ndarray,
                       patch_col: np.ndarray) -> tuple[float, int]:
    """(sum over query patches of the attention-weighted mean grid distance to key patches, number of query
    patches) for one image's [n, n] attention; prefix tokens (row < 0) are dropped and rows re-normalised."""
    row, col = np.asarray(patch_row, np.float64), np.asarray(patch_col, np.float64)
    patch = (row >= 0) & (col >= 0)
    a = np.asarray(attention, np.float64)[np.ix_(patch, patch)]
    dist = np.hypot(row[patch][:, None] - row[patch][None, :], col[patch][:, None] - col[patch][None, :])
    total = a.sum(axis=1)
    ok = total > 0
    return float(((a * dist).sum(axis=1)[ok] / total[ok]).sum()), int(ok.sum())


def head_vision(attrs: PatchAttributes, layouts: Mapping[str, np.ndarray], *, k: int = NEIGHBOURS,
                seed: int = 0) -> dict:
    """A head's ``{"sorting": {layout: {attribute: score}}}`` (2D layouts only; keys that cannot be computed are
    omitted). Its attention distance is the ``mean_distance`` score."""
    out: dict = {}
    sorting = {}
    for name, coords in sorted(layouts.items()):
        if coords.shape[1] != 2:
            continue
        scores = {a: layout_sorting(coords, attrs.values[a], attrs.image_id, period=PERIODS[a], k=k, seed=seed)
                  for a in VISION_ATTRIBUTES if a in attrs.values}
        scores = {a: round6(s) for a, s in scores.items() if s is not None}
        if scores:
            sorting[name] = scores
    if sorting:
        out["sorting"] = sorting
    return out


def vision_metrics(vision: Mapping) -> dict[str, float]:
    """Flat per-head scores for the head's ``metrics`` (sortable in the matrix view): ``<attribute>_sorting``, the
    sorting score's mean over the 2D layouts."""
    out = {}
    for a in VISION_ATTRIBUTES:
        found = [scores[a] for scores in vision.get("sorting", {}).values() if a in scores]
        if found:
            out[sorting_metric(a)] = round6(float(np.mean(found)))
    return out


def sorting_metric(attribute: str) -> str:
    """The ``metrics`` key of an attribute's mean sorting score."""
    return f"{attribute}_sorting"


def _grids(image_id: np.ndarray, position: np.ndarray, row: np.ndarray,
           col: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for iid in np.unique(image_id).tolist():
        sel = np.flatnonzero(image_id == iid)
        sel = sel[np.argsort(position[sel], kind="stable")]
        out[int(iid)] = (row[sel].astype(np.int64), col[sel].astype(np.int64))
    return out


def capture_patch_attributes(cap: CaptureResult) -> PatchAttributes | None:
    """`PatchAttributes` of an image capture (reads its fitted pictures); None for a text model."""
    from PIL import Image

    tok, images = cap.tokens, cap.images
    if tok.patch_row is None or tok.patch_col is None:
        return None
    pictures = {}
    for im in images:
        with Image.open(cap.directory / im["file"]) as png:
            pictures[int(im["image_id"])] = np.asarray(png.convert("RGB"))
    image_id = np.asarray(tok.sentence_id, np.int64)
    row, col = np.asarray(tok.patch_row, np.int64), np.asarray(tok.patch_col, np.int64)
    values = token_attributes({int(im["image_id"]): str(im["name"]) for im in images}, pictures, image_id, row, col,
                              (int(cap.facts.patch_size[0]), int(cap.facts.patch_size[1])))
    return PatchAttributes(image_id, values, _grids(image_id, np.asarray(tok.position), row, col))
