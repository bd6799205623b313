"""Large heads on the synthetic site: tile pyramids in the head view, lazy head loading in the matrix view."""

from __future__ import annotations

import re

import pytest

import synthetic_images as si
from helpers import QUERY_RGB, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser
HEAD_FILE = re.compile(r"/data/synth-big/coords/L\d+H\d+_pca-2d\.arrow$")


def draw_mode(page) -> str:
    return page.evaluate("document.querySelector('.atlas-view').dataset.drawMode")


def real_errors(tab) -> list[str]:
    """Console errors other than the 404s of tiles that were never written because they are empty."""
    return [e for e in tab.errors if "Failed to load resource" not in e]


def test_tiles_when_zoomed_out_points_when_zoomed_in(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{si.BIG}/L0/H0/")
    canvas = page.locator(".atlas-canvas")
    assert draw_mode(page) == "tiles"
    page.wait_for_function("performance.getEntriesByName('atlas:first-draw').length === 1")
    page.wait_for_timeout(300)
    img = pixels(canvas)
    assert count_rgb(img, si.TILE_RGB) > 1000 and count_rgb(img, QUERY_RGB) == 0
    assert any("/tiles/L0H0_pca-2d/" in url for url in tab.requests)

    page.fill(".atlas-search", "w5")
    page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === '32'")
    img = pixels(canvas)
    assert draw_mode(page) == "tiles" and 9 * 16 <= count_rgb(img, QUERY_RGB) and count_rgb(img, si.TILE_RGB) == 0
    page.fill(".atlas-search", "")

    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    for _ in range(8):
        page.mouse.wheel(0, -250)
        page.wait_for_timeout(50)
        if draw_mode(page) == "points":
            break
    assert draw_mode(page) == "points"
    img = pixels(canvas)
    assert count_rgb(img, QUERY_RGB) > 1000 and count_rgb(img, si.TILE_RGB) == 0
    assert not real_errors(tab) and not tab.dialogs


def test_matrix_fetches_heads_in_view_only_when_needed(synthetic, tab):
    page = tab.page
    page.goto(f"{synthetic.url}models/{si.BIG}/")
    page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    assert not [u for u in tab.requests if HEAD_FILE.search(u)]
    page.locator("select[aria-label=colour]").select_option("position")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    total = si.BIG_LAYERS * si.BIG_HEADS
    fetched = [u for u in tab.requests if HEAD_FILE.search(u)]
    assert 0 < len(fetched) < total / 2
    drawn = page.evaluate("[...document.querySelectorAll('.atlas-matrix-cell')].filter(c => c.dataset.drawn === 'true').length")
    assert drawn == len(fetched)
    # cells waiting for their head keep showing the thumbnail
    last = page.locator(".atlas-matrix-cell").last
    assert last.get_attribute("data-drawn") != "true" and last.locator(".atlas-cell-thumb").get_attribute("hidden") is None

    # every head shows the same points: counts everywhere, points fetched only for the heads in view
    page.fill(".atlas-search", "w5")
    page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{32 * total}'")
    assert page.locator(".atlas-search-count").text_content() == f"{32 * total} points in {total} heads"
    assert set(page.locator(".atlas-cell-hits").all_text_contents()) == {"32"}
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert len({u for u in tab.requests if HEAD_FILE.search(u)}) == len(fetched)
    assert not tab.errors and not tab.dialogs


def test_matrix_cell_becomes_interactive_under_the_pointer(synthetic, tab):
    page = tab.page
    page.goto(f"{synthetic.url}models/{si.BIG}/")
    page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    cell = page.locator(".atlas-matrix-cell[data-layer='0'][data-head='1']")
    box = cell.locator(".atlas-cell-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.querySelector(\".atlas-matrix-cell[data-layer='0'][data-head='1']\").dataset.drawn === 'true'")
    assert [u.rsplit("/", 1)[1] for u in tab.requests if HEAD_FILE.search(u)] == ["L0H1_pca-2d.arrow"]
    pos = page.evaluate("document.querySelector('.atlas-view').atlasView.clientPosition(0, 1, 0)")
    page.mouse.move(pos["x"], pos["y"])
    page.locator(".atlas-matrix-tooltip").wait_for(state="visible")
    assert page.locator(".atlas-matrix-tooltip .atlas-tip-token").text_content() == "w0"
    assert not tab.errors
