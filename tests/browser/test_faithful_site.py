"""The faithfulness measures and the default layout in the browser: matrix cells sort by the shown layout's
measures, and manifest.json's default_layout is what the matrix and head pages open with."""

from __future__ import annotations

import json

import pytest

import synthetic_site as ss
from helpers import open_head
from test_matrix_view import cell_order, open_matrix

pytestmark = pytest.mark.browser


def test_cells_sort_by_the_measures_of_the_layout_shown(synthetic, tab):
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    sort = tab.page.locator("select[aria-label='sort heads']")
    labels = sort.locator("option").all_text_contents()
    assert "query rank corr (this layout) ↓" in labels and "nearest key share (this layout) ↓" in labels
    sort.select_option("layout.query_rank_corr:desc")  # pca-2d: 0.0, 0.1, 0.2, 0.3 by head index
    assert cell_order(tab.page) == ["L1H1", "L1H0", "L0H1", "L0H0"]
    assert tab.page.locator(".atlas-cell-metric").first.text_content() == "0.300"
    tab.page.locator("select[aria-label=layout]").select_option("tsne-2d")  # tsne-2d: 0.9, 0.7, 0.5, 0.3
    tab.page.wait_for_function("document.querySelector('.atlas-matrix-cell').dataset.head === '0'")
    assert cell_order(tab.page) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert tab.page.locator(".atlas-cell-metric").first.text_content() == "0.900"
    sort.select_option("layout.nearest_key_share:desc")  # not defined for tsne-2d: no number, order kept
    assert tab.page.locator(".atlas-cell-metric").first.text_content() == ""
    tab.page.locator("select[aria-label=layout]").select_option("pca-3d")  # no measures: cells show none
    assert all(t == "" for t in tab.page.locator(".atlas-cell-metric").all_text_contents())


def _with_default(page, layout: str) -> None:
    """Serve manifest.json with default_layout set (the synthetic site itself names none)."""
    def handle(route):
        doc = json.loads(route.fetch().text())
        doc["default_layout"] = layout
        route.fulfill(body=json.dumps(doc), content_type="application/json")
    page.route("**/manifest.json", handle)


def test_pages_open_with_the_default_layout(synthetic, tab):
    _with_default(tab.page, "tsne-2d")
    open_matrix(tab.page, f"{synthetic.url}models/{ss.MODEL}/")
    assert tab.page.locator("select[aria-label=layout]").input_value() == "tsne-2d"
    assert "layout=" not in tab.page.url  # the default is not written to the address
    open_head(tab.page, f"{synthetic.url}models/{ss.MODEL}/L0/H1/")
    assert tab.page.locator("select[aria-label=layout]").input_value() == "tsne-2d"
    # an explicit layout in the address still wins
    open_head(tab.page, f"{synthetic.url}models/{ss.MODEL}/L0/H1/#layout=pca-2d")
    assert tab.page.locator("select[aria-label=layout]").input_value() == "pca-2d"
