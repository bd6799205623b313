"""Vision head measures (atlas_build/metrics/vision.py) on synthetic layouts and attention where the answer is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from atlas_build.datasets.patches import patch_columns
from atlas_build.datasets.probes import make_probe, probe_params
from atlas_build.metrics.vision import (PatchAttributes, attention_distance, capture_patch_attributes,
                                        circular_difference, head_vision, layout_sorting,
                                        neighbour_agreement, patch_means, token_attributes)

GRID = (3, 4)
PREFIX = 1


def _hue_ring(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A layout that places each point on a circle at its hue angle (sorted by hue, cyclically)."""
    t = 2 * np.pi * values
    return np.c_[np.cos(t), np.sin(t)] + rng.normal(0, 1e-3, (len(values), 2))


def test_probe_params_parse_catalogue_names() -> None:
    p = probe_params("grating-f8-a45")
    assert p is not None and (p.family, p.freq, p.angle) == ("gratings", 8, 45)
    assert probe_params("hue-a90").family == "hue"
    assert probe_params("astronaut") is None and probe_params("grating-f7-a45") is None


def test_circular_difference() -> None:
    assert circular_difference(np.array([0.9]), np.array([0.1]), 1.0)[0] == pytest.approx(0.2)
    assert circular_difference(np.array([0.0]), np.array([135.0]), 180.0)[0] == pytest.approx(45.0)
    assert circular_difference(np.array([0.9]), np.array([0.1]), None)[0] == pytest.approx(0.8)


def test_patch_means_of_flat_patches() -> None:
    ps = 4
    colours = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [128, 128, 128]]], np.uint8)
    picture = np.repeat(np.repeat(colours, ps, axis=0), ps, axis=1)
    hue, brightness = patch_means(picture, (ps, ps), (2, 2))
    assert hue[0, 0] == pytest.approx(0.0) and hue[0, 1] == pytest.approx(1 / 3) and hue[1, 0] == pytest.approx(2 / 3)
    assert np.isnan(hue[1, 1])
    assert brightness[0, 0] == pytest.approx(0.299) and brightness[1, 1] == pytest.approx(128 / 255)


def test_token_attributes_by_probe_family() -> None:
    ps, size = 8, 32
    names = {0: "hue-a0", 1: "brightness-a90", 2: "grating-f8-a45", 3: "astronaut"}
    grid = (size // ps, size // ps)
    pictures = {i: make_probe(probe_params(n), size, 0) if probe_params(n) else np.zeros((size, size, 3), np.uint8)
                for i, n in names.items()}
    cols = patch_columns(len(names), grid, PREFIX)
    a = token_attributes(names, pictures, cols["image_id"], cols["patch_row"], cols["patch_col"], (ps, ps))
    img, prefix = cols["image_id"], cols["prefix"]
    hue, _ = patch_means(pictures[0], (ps, ps), grid)
    assert np.allclose(a["hue"][(img == 0) & ~prefix], hue.ravel())
    assert np.isnan(a["hue"][img != 0]).all() and np.isnan(a["hue"][prefix]).all()
    bright = a["brightness"][(img == 1) & ~prefix].reshape(grid)
    assert (np.diff(bright[:, 0]) < 0).all(), "brightness-a90 gets brighter upwards: top rows brightest"
    assert np.isnan(a["brightness"][img != 1]).all()
    g = (img == 2) & ~prefix
    assert (a["grating_frequency"][g] == 3.0).all() and (a["grating_angle"][g] == 45.0).all()
    assert np.isnan(a["grating_angle"][~g]).all() and np.isnan(a["grating_frequency"][img == 3]).all()


def test_a_layout_sorted_by_hue_scores_one_and_a_random_one_zero() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 64)
    hue = rng.uniform(0, 1, len(groups))
    assert neighbour_agreement(_hue_ring(hue, rng), hue, groups, period=1.0) > 0.97
    assert abs(neighbour_agreement(rng.normal(size=(len(hue), 2)), hue, groups, period=1.0)) < 0.03
    # a line sorted by hue breaks at the wrap-around only: still sorted, hue being circular
    line = np.c_[hue, np.zeros_like(hue)]
    assert neighbour_agreement(line, hue, groups, period=1.0) > 0.97


def test_keeping_images_apart_is_not_sorting() -> None:
    """Image-constant values (a grating's frequency): clusters per image score 1 when same-image neighbours count,
    about 0 once neighbours come from other images; clusters ordered by the value score ≈ 1 either way."""
    rng = np.random.default_rng(1)
    n_img, per = 40, 30
    groups = np.repeat(np.arange(n_img), per)
    freq = np.repeat(rng.integers(1, 6, n_img).astype(float), per)
    centres = rng.normal(0, 100, (n_img, 2))
    clumps = centres[groups] + rng.normal(0, 1, (len(groups), 2))
    assert neighbour_agreement(clumps, freq) == pytest.approx(1.0)
    assert abs(neighbour_agreement(clumps, freq, groups)) < 0.2
    ordered = np.c_[freq * 100, np.zeros_like(freq)] + rng.normal(0, 1, (len(groups), 2))
    assert neighbour_agreement(ordered, freq, groups) > 0.95


def test_neighbour_agreement_edge_cases() -> None:
    xy = np.random.default_rng(0).normal(size=(30, 2))
    assert neighbour_agreement(xy, np.ones(30)) is None, "all values equal"
    assert neighbour_agreement(xy, np.full(30, np.nan)) is None
    assert neighbour_agreement(xy, np.arange(30.0), np.zeros(30)) is None, "one group: no other-image neighbours"
    v = np.arange(30.0)
    assert neighbour_agreement(xy, v, seed=3) == neighbour_agreement(xy.copy(), v.copy(), seed=3)


def test_layout_sorting_averages_queries_and_keys() -> None:
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(6), 50)
    hue = rng.uniform(0, 1, len(groups))
    sorted_q, random_k = _hue_ring(hue, rng), rng.normal(size=(len(hue), 2))
    q = neighbour_agreement(sorted_q, hue, groups, period=1.0)
    k = neighbour_agreement(random_k, hue, groups, period=1.0)
    joint = np.concatenate([sorted_q, random_k])
    assert layout_sorting(joint, hue, groups, period=1.0) == pytest.approx((q + k) / 2)


def _grid_tokens() -> tuple[np.ndarray, np.ndarray]:
    cols = patch_columns(1, GRID, PREFIX)
    return cols["patch_row"].astype(int), cols["patch_col"].astype(int)


def test_attention_to_the_same_patch_has_distance_zero() -> None:
    row, col = _grid_tokens()
    total, count = attention_distance(np.eye(len(row)), row, col)
    assert (total, count) == (0.0, GRID[0] * GRID[1])


def test_attention_one_row_down_has_distance_one_and_prefix_is_dropped() -> None:
    row, col = _grid_tokens()
    n = len(row)
    a = np.zeros((n, n))
    a[:, 0] = 0.5  # half of every row on [CLS]: dropped, the rest re-normalised
    for i in range(PREFIX, n):
        r = row[i] + 1 if row[i] + 1 < GRID[0] else row[i] - 1
        a[i, PREFIX + r * GRID[1] + col[i]] = 0.5
    total, count = attention_distance(a, row, col)
    assert total / count == pytest.approx(1.0)
    diag = np.zeros((n, n))
    diag[PREFIX, PREFIX + GRID[1] + 1] = 1.0  # (0, 0) -> (1, 1)
    assert attention_distance(diag, row, col) == pytest.approx((np.sqrt(2), 1))


def test_head_vision_scores_2d_layouts_only() -> None:
    rng = np.random.default_rng(3)
    n_img = 8
    cols = patch_columns(n_img, GRID, PREFIX)
    image_id = cols["image_id"].astype(int)
    hue = np.where(cols["prefix"], np.nan, rng.uniform(0, 1, len(image_id)))
    grids = {i: (cols["patch_row"][image_id == i].astype(int), cols["patch_col"][image_id == i].astype(int))
             for i in range(n_img)}
    attrs = PatchAttributes(image_id, {"hue": hue}, grids)
    ring = _hue_ring(np.nan_to_num(hue), rng)
    joint = np.concatenate([ring, ring])
    layouts = {"umap-2d": joint, "pca-3d": rng.normal(size=(len(joint), 3))}
    out = head_vision(attrs, layouts, k=5)
    assert "attention_distance" not in out, "the attention distance is the mean_distance score"
    assert list(out["sorting"]) == ["umap-2d"] and list(out["sorting"]["umap-2d"]) == ["hue"]
    expected = layout_sorting(joint, hue, image_id, period=1.0, k=5)
    assert out["sorting"]["umap-2d"]["hue"] == pytest.approx(expected, rel=1e-5) and expected > 0.8


def test_text_captures_have_no_patch_attributes() -> None:
    tokens = SimpleNamespace(patch_row=None, patch_col=None)
    assert capture_patch_attributes(SimpleNamespace(tokens=tokens, images=[])) is None
