"""The matrix view on the synthetic site: one cell per head, thumbnails first, then every head drawn on one
shared canvas; hover, search counts, sort and filter."""

from __future__ import annotations

import pytest

import synthetic_site as ss
from helpers import KEY_RGB, QUERY_RGB, count_rgb, hover_matrix_point, pixels

pytestmark = pytest.mark.browser


def open_matrix(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")


def wait_drawn(page) -> None:
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true' && "
                           "[...document.querySelectorAll('.atlas-matrix-cell')].every(c => c.dataset.drawn === 'true')")


def cell_order(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('.atlas-matrix-cell:not([hidden])')]"
                         ".map(c => `L${c.dataset.layer}H${c.dataset.head}`)")


def test_one_cell_per_head_drawn_in_both_colours(synthetic, tab):
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    cells = tab.page.locator(".atlas-matrix-cell")
    assert cells.count() == ss.LAYERS * ss.HEADS
    assert cell_order(tab.page) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert tab.page.locator(".atlas-matrix-static").is_hidden()
    assert cells.nth(2).get_attribute("href") == "L1/H0/"
    # the thumbnails show the default picture: no head file is fetched for it
    tab.page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    assert tab.page.locator(".atlas-cell-thumb:not([hidden])").count() == 4
    assert not [u for u in tab.requests if u.endswith(".arrow") and "/L" in u]
    # a layout without thumbnails needs the points
    tab.page.locator("select[aria-label=layout]").select_option("pca-3d")
    wait_drawn(tab.page)
    assert tab.page.locator("canvas").count() == 1, "one shared canvas for every head"
    for i in range(cells.count()):
        img = pixels(cells.nth(i).locator(".atlas-cell-plot"))
        assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert cells.nth(2).get_attribute("href") == "L1/H0/#layout=pca-3d"
    assert not tab.errors and not tab.dialogs


def test_search_counts_hits_in_every_head(synthetic, tab):
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    tab.page.fill(".atlas-search", "the")
    per_head = len(synthetic.synth.matching("the"))
    tab.page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{4 * per_head}'")
    badges = tab.page.locator(".atlas-cell-hits").all_text_contents()
    assert badges == [str(per_head)] * 4
    assert tab.page.locator(".atlas-matrix-cell.has-hits").count() == 4
    assert tab.page.locator(".atlas-matrix-cell").first.get_attribute("href") == "L0/H0/#search=the"
    tab.page.fill(".atlas-search", "zebra")
    tab.page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === '0'")
    assert tab.page.locator(".atlas-matrix-cell.has-hits").count() == 0


def test_sort_by_metric_and_filter_by_label(synthetic, tab):
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    sort = tab.page.locator("select[aria-label='sort heads']")
    sort.select_option("spearman:asc")
    assert cell_order(tab.page) == ["L1H1", "L1H0", "L0H1", "L0H0"]
    assert tab.page.locator(".atlas-cell-metric").first.text_content() == "-0.800"
    sort.select_option("spearman:desc")
    assert cell_order(tab.page) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    tab.page.locator("select[aria-label=label]").select_option("next-token")
    assert cell_order(tab.page) == ["L0H1", "L1H1"]
    assert "label=next-token" in tab.page.url and "sort=spearman%3Adesc" in tab.page.url
    tab.page.reload()
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert cell_order(tab.page) == ["L0H1", "L1H1"]


def test_layout_and_colour_switch_redraw_cells(synthetic, tab):
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    tab.page.locator("select[aria-label=colour]").select_option("position")
    wait_drawn(tab.page)
    canvas = tab.page.locator(".atlas-cell-plot").first
    before = pixels(canvas)
    assert count_rgb(before, QUERY_RGB) == 0
    tab.page.locator("select[aria-label=layout]").select_option("tsne-2d")
    tab.page.wait_for_timeout(100)
    assert (before != pixels(canvas)).any()
    tab.page.locator("select[aria-label=colour]").select_option("qk")
    tab.page.wait_for_timeout(100)
    assert count_rgb(pixels(canvas), QUERY_RGB) > 0
    tab.page.locator("select[aria-label=colour]").select_option("position")
    assert tab.page.locator(".atlas-matrix-cell").first.get_attribute("href") == "L0/H0/#layout=tsne-2d&colour=position"


def test_hover_names_the_point_and_rings_it_in_every_head(synthetic, tab):
    page = tab.page
    open_matrix(page, f"{synthetic.url}models/{ss.MODEL}/#layout=pca-3d")
    wait_drawn(page)
    point = synthetic.synth.point(sentence=0, position=2, is_key=0)
    tip = hover_matrix_point(page, 1, 0, point.point_id)
    assert tip.locator(".atlas-tip-token").text_content() == "cat"
    assert tip.locator(".atlas-tip-kind").text_content() == "query"
    assert tip.locator(".atlas-tip-pos").text_content() == "position 3 of 5 · sentence 0"
    assert page.locator(".atlas-matrix-stage").get_attribute("data-hover-point") == str(point.point_id)
    cell = page.locator(".atlas-matrix-cell[data-layer='1'][data-head='0']")
    assert cell.get_attribute("href") == f"L1/H0/#layout=pca-3d&point={point.point_id}"
    # the same point is ringed (black pixels) in every drawn head
    for other in range(ss.LAYERS * ss.HEADS):
        assert count_rgb(pixels(page.locator(".atlas-cell-plot").nth(other)), (0, 0, 0)) > 5
    page.mouse.move(2, 2)
    tip.wait_for(state="hidden")
    assert cell.get_attribute("href") == "L1/H0/#layout=pca-3d"
    assert count_rgb(pixels(page.locator(".atlas-cell-plot").first), (0, 0, 0)) == 0
    assert not tab.errors
