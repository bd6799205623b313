"""Image models on the synthetic site: the image view (heatmap, outline, arrows) and the patch colourings."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_images as si
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser
HEAT = np.array((0xFF, 0x7F, 0x0E), float)
GREY = (0x9E, 0x9E, 0x9E)


def vit_point(points, image: int, position: int, is_key: int) -> si.VitPoint:
    return next(p for p in points if (p.image, p.position, p.is_key) == (image, position, is_key))


def pos(row: int, col: int) -> int:
    return si.PREFIX + row * si.COLS + col


def patch_centre(img: np.ndarray, row: int, col: int) -> np.ndarray:
    """Pixel at the centre of patch (row, col) of a screenshot of an image-view canvas."""
    size = img.shape[0] / si.ROWS
    return img[int((row + 0.5) * size), int((col + 0.5) * size)].astype(float)


def test_clicking_a_patch_opens_the_image_view_with_its_heatmap(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{si.VIT}/L0/H0/")
    pts = synthetic.synth.vit
    query = vit_point(pts, 0, pos(1, 1), 0)
    page.mouse.click(*client_position(page, query.point_id))
    view = page.locator(".atlas-image-view")
    page.wait_for_function("document.querySelector('.atlas-image-view').dataset.focus === '6:query'")
    assert view.locator(".atlas-image-title").text_content() == "Image blocks · 4 × 4 patches"
    assert page.locator(".atlas-sentence").count() == 0
    assert f"point={query.point_id}" in page.url
    heat = pixels(page.locator(".atlas-image-heatmap"))
    # the strongest target (the patch to the right) carries the full overlay, a weak one almost none
    target = 0.15 * np.array(si.patch_rgb(0, 1, 2)) + 0.85 * HEAT
    assert np.abs(patch_centre(heat, 1, 2) - target).max() <= 3
    assert np.abs(patch_centre(heat, 3, 0) - si.patch_rgb(0, 3, 0)).max() <= 8
    assert view.locator(".atlas-chip-weight").text_content().strip() == f"{si.vit_attention(0)[6, 0]:.2f}"
    # the head's aggregate pattern by patch offset: a 7 × 7 map whose brightest cells are Δ = (0, +1) and, for the
    # wrap-around of the last column, Δ = (0, −3)
    means = np.array(si.patch_means(si.vit_attention(0)))
    aggregate = view.locator(".atlas-image-aggregate")
    aggregate.wait_for(state="visible")
    assert float(aggregate.locator("canvas").get_attribute("data-peak")) == pytest.approx(means.max())
    centre = (si.ROWS - 1, si.COLS - 1)
    assert means[centre[0], centre[1] + 1] == pytest.approx(means.max())
    assert means[centre[0], centre[1] - 3] == pytest.approx(means.max())
    assert aggregate.locator("canvas").get_attribute("width") == aggregate.locator("canvas").get_attribute("height")
    prefix = float(si.vit_attention(0)[si.PREFIX:, :si.PREFIX].sum() / (si.ROWS * si.COLS))
    assert f"give {prefix:.3f} of their attention" in aggregate.locator("figcaption").text_content()
    size = heat.shape[0] // si.ROWS
    assert count_rgb(heat[size:2 * size, size:2 * size], QUERY_RGB) > 4 * size  # the selected patch's outline
    arrows = pixels(page.locator(".atlas-image-arrows"))
    mid = arrows[int(1.5 * size) - 2:int(1.5 * size) + 3, 2 * size - 4:2 * size + 4].reshape(-1, 3).astype(float)
    assert np.abs(mid - QUERY_RGB).sum(axis=1).min() < 60  # the selected query's arrow, in query green

    page.evaluate("scrollTo(0, 0)")  # the screenshots scrolled the image view into the middle of the window
    key = vit_point(pts, 0, pos(2, 3), 1)
    page.mouse.click(*client_position(page, key.point_id))
    page.wait_for_function(f"document.querySelector('.atlas-image-view').dataset.focus === '{pos(2, 3)}:key'")
    heat = pixels(page.locator(".atlas-image-heatmap"))
    # a key's column: the query to its left attends to it most
    assert np.abs(patch_centre(heat, 2, 2) - (0.15 * np.array(si.patch_rgb(0, 2, 2)) + 0.85 * HEAT)).max() <= 3
    assert count_rgb(heat[2 * size:3 * size, 3 * size:], KEY_RGB) > 4 * size

    box = page.locator(".atlas-image-heatmap").bounding_box()
    page.mouse.click(box["x"] + size / 2, box["y"] + size / 2)
    page.wait_for_function("document.querySelector('.atlas-image-view').dataset.focus === '1:key'")
    assert f"point={vit_point(pts, 0, 1, 1).point_id}" in page.url

    page.locator("select[aria-label=image]").select_option("1")
    page.wait_for_function("document.querySelector('.atlas-image-view').dataset.image === '1'")
    assert view.locator(".atlas-image-title").text_content() == f"Image {si.IMAGES[1]} · 4 × 4 patches"
    assert page.locator("img[src='x']").count() == 0
    page.keyboard.press("Escape")
    view.wait_for(state="hidden")
    assert not tab.errors and not tab.dialogs


def point_colours(page, points) -> dict[si.VitPoint, tuple[int, int, int]]:
    img = pixels(page.locator(".atlas-canvas"))
    box = page.locator(".atlas-canvas").bounding_box()
    out = {}
    for p in points:
        x, y = client_position(page, p.point_id)
        out[p] = tuple(int(v) for v in img[round(y - box["y"]), round(x - box["x"])])
    return out


def set_colour(page, value: str) -> None:
    page.locator("select[aria-label=colour]").select_option(value)
    page.wait_for_function(f"location.hash.includes('colour={value}')")
    page.wait_for_timeout(100)


def test_patch_colourings(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{si.VIT}/L0/H1/")
    pts = synthetic.synth.vit
    set_colour(page, "patch-row")
    colours = point_colours(page, pts)
    by_row = {r: {c for p, c in colours.items() if p.row == r} for r in range(-1, si.ROWS)}
    assert by_row[-1] == {GREY}
    assert all(len(by_row[r]) == 1 for r in range(si.ROWS)), by_row
    assert len({next(iter(by_row[r])) for r in range(si.ROWS)}) == si.ROWS
    assert count_rgb(pixels(page.locator(".atlas-canvas")), QUERY_RGB) == 0

    set_colour(page, "hue")
    page.wait_for_function("!document.querySelector('.atlas-legend').textContent.includes('loading')")
    colours = point_colours(page, [p for p in pts if p.image == 0 and p.row >= 0])
    by_col = {c: {v for p, v in colours.items() if p.col == c} for c in range(si.COLS)}
    assert all(len(v) == 1 for v in by_col.values()) and len({next(iter(v)) for v in by_col.values()}) == si.COLS

    set_colour(page, "pixels")
    colours = point_colours(page, pts)
    for p, c in colours.items():
        assert c == (si.patch_rgb(p.image, p.row, p.col) if p.row >= 0 else (KEY_RGB if p.is_key else QUERY_RGB)), p
    assert not tab.errors and not tab.dialogs
