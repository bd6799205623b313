"""What the views take from manifest.json's registries: the colours (atlas_build/export/colours.py, the one place
they are defined) and the score registry that names the matrix view's sort menu."""

from __future__ import annotations

import pytest

import synthetic_site as ss
from helpers import KEY_RGB, QUERY_RGB, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser

QUERY_HEX, KEY_HEX = "#123456", "#c0ffee"
SCORES = [
    {"name": "attn_distance", "label": "attention distance", "unit": "positions", "applies": "both",
     "doc": "mean distance from query to key"},
    {"name": "not_computed", "label": "absent", "unit": "", "applies": "text", "doc": "no head has it"},
    {"name": "spearman", "label": "rank <b>correlation</b>", "unit": "", "applies": "text", "doc": "Spearman's rho"},
]


def edit_manifest(page, change) -> None:
    """Serve every manifest.json with `change(doc)` applied."""
    def handle(route):
        response = route.fetch()
        doc = response.json()
        change(doc)
        route.fulfill(response=response, json=doc)

    page.route("**/manifest.json", handle)


def test_points_and_css_take_the_manifests_colours(synthetic, tab):
    edit_manifest(tab.page, lambda doc: doc["colours"].update(query=QUERY_HEX, key=KEY_HEX))
    open_head(tab.page, f"{synthetic.url}models/{ss.MODEL}/L0/H0/")
    img = pixels(tab.page.locator(".atlas-canvas"))
    n_points = len(synthetic.synth.points) // 2
    assert count_rgb(img, (0x12, 0x34, 0x56)) >= 9 * n_points
    assert count_rgb(img, (0xC0, 0xFF, 0xEE)) >= 9 * n_points
    assert count_rgb(img, QUERY_RGB) == 0 and count_rgb(img, KEY_RGB) == 0
    css = tab.page.evaluate("(() => { const s = getComputedStyle(document.querySelector('.atlas-view'));"
                            " return [s.getPropertyValue('--atlas-query'), s.getPropertyValue('--atlas-key')]; })()")
    assert [v.strip() for v in css] == [QUERY_HEX, KEY_HEX]
    assert not tab.errors and not tab.dialogs


@pytest.mark.parametrize("colours", [None, {"query": "red; background: url(x)"}])
def test_missing_or_malformed_colours_are_refused(synthetic, tab, colours):
    def change(doc):
        if colours is None:
            del doc["colours"]
        else:
            doc["colours"].update(colours)

    edit_manifest(tab.page, change)
    tab.page.goto(f"{synthetic.url}models/{ss.MODEL}/L0/H0/")
    error = tab.page.locator(".atlas-error")
    error.wait_for()
    assert "colours" in error.text_content()
    assert tab.page.locator(".atlas-canvas").count() == 0


RANK_DOC = "how well distance from a query ranks its keys as attention does, in the layout shown (1 = exactly)"
SHARE_DOC = "attention on the key nearest each query in the layout shown ÷ the row's top attention"
LAYOUT_MEASURES = [
    ["layout.query_rank_corr:desc", "query rank corr (this layout) ↓", RANK_DOC],
    ["layout.query_rank_corr:asc", "query rank corr (this layout) ↑", RANK_DOC],
    ["layout.nearest_key_share:desc", "nearest key share (this layout) ↓", SHARE_DOC],
    ["layout.nearest_key_share:asc", "nearest key share (this layout) ↑", SHARE_DOC],
]


def test_sort_menu_follows_the_score_registry(synthetic, tab):
    edit_manifest(tab.page, lambda doc: doc.update(scores=SCORES))
    tab.page.goto(f"{synthetic.url}models/{ss.MODEL}/")
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    options = tab.page.locator("select[aria-label='sort heads'] option").evaluate_all(
        "os => os.map(o => [o.value, o.textContent, o.title])")
    assert options == [
        ["order", "layer, head", ""],
        ["attn_distance:desc", "attention distance ↓", "mean distance from query to key"],
        ["attn_distance:asc", "attention distance ↑", "mean distance from query to key"],
        ["spearman:desc", "rank <b>correlation</b> ↓", "Spearman's rho"],
        ["spearman:asc", "rank <b>correlation</b> ↑", "Spearman's rho"],
        *LAYOUT_MEASURES,  # the synthetic heads' per-layout faithfulness follows the registry's scores
    ]
    tab.page.locator("select[aria-label='sort heads']").select_option("spearman:asc")
    order = tab.page.evaluate("[...document.querySelectorAll('.atlas-matrix-cell')]"
                              ".map(c => `L${c.dataset.layer}H${c.dataset.head}`)")
    assert order == ["L1H1", "L1H0", "L0H1", "L0H0"]
    assert not tab.errors and not tab.dialogs


def test_sort_menu_without_a_registry_lists_the_heads_scores_by_name(synthetic, tab):
    tab.page.goto(f"{synthetic.url}models/{ss.MODEL}/")
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    labels = tab.page.locator("select[aria-label='sort heads'] option").all_text_contents()
    assert labels == ["layer, head", "attn distance ↓", "attn distance ↑", "spearman ↓", "spearman ↑",
                      *[label for _, label, _ in LAYOUT_MEASURES]]
