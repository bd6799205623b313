"""Readable token text on the synthetic site: byte-level BPE pieces (Ġempire, ĠðŁĺ + Ģ) are never what the views
show; search, tooltips, the sentence view and the SVG export use the text (␣ marks a space before a token, ◌ a
token with no text of its own)."""

from __future__ import annotations

import pytest

import synthetic_site as ss
from helpers import client_position, hover_matrix_point, open_head

pytestmark = pytest.mark.browser
SHOWN = ["<|endoftext|>", "An", "␣empire", "␣café", "◌", "␣😀"]


def open_matrix(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")


def head_url(site) -> str:
    return f"{site.url}models/{ss.MODEL}/L0/H0/"


def test_head_search_finds_tokens_by_their_text(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    for query, hits in [("😀", 2), ("empire", 2), (" CAFÉ", 2), ("␣empire", 2), ("Ġempire", 0), ("ðŁĺ", 0)]:
        tab.page.fill(".atlas-search", query)
        tab.page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{hits}'")
    assert "␣" in tab.page.locator(".atlas-token-key").text_content()
    assert not tab.errors


def test_tooltip_sentence_view_and_svg_show_the_text(synthetic, tab):
    page = tab.page
    open_head(page, head_url(synthetic))
    point = synthetic.synth.point(sentence=ss.BYTE_LEVEL, position=5, is_key=0)
    x, y = client_position(page, point.point_id)
    page.mouse.move(x, y)
    tip = page.locator(".atlas-tooltip")
    tip.wait_for(state="visible")
    assert tip.locator(".atlas-tip-token").text_content() == "␣😀"
    assert tip.locator(".atlas-tip-piece").text_content() == "piece Ģ"
    partial = synthetic.synth.point(sentence=ss.BYTE_LEVEL, position=4, is_key=0)
    page.mouse.move(*client_position(page, partial.point_id))
    page.wait_for_function("document.querySelector('.atlas-tip-token').textContent === '◌'")
    page.mouse.click(x, y)
    view = page.locator(".atlas-sentence")
    view.wait_for(state="visible")
    assert view.locator("text.atlas-token-q").all_text_contents() == SHOWN
    svg = page.evaluate("document.querySelector('.atlas-view').atlasView.svgText()")
    assert "␣😀" in svg and "␣empire" in svg and "Ġ" not in svg and "ðŁ" not in svg
    assert not tab.errors


def test_matrix_search_and_tooltip_use_the_text(synthetic, tab):
    page = tab.page
    open_matrix(page, f"{synthetic.url}models/{ss.MODEL}/#layout=pca-3d")
    page.fill(".atlas-search", "😀")
    page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === '8'")
    assert page.locator(".atlas-cell-hits").all_text_contents() == ["2"] * 4
    point = synthetic.synth.point(sentence=ss.BYTE_LEVEL, position=2, is_key=1)
    tip = hover_matrix_point(page, 0, 0, point.point_id)
    assert tip.locator(".atlas-tip-token").text_content() == "␣empire"
    assert tip.locator(".atlas-tip-piece").text_content() == "piece Ġempire"
    assert not tab.errors
