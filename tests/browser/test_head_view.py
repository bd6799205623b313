"""The single-head view on the synthetic site: drawing, hover, search, selection, sentence view, escaping."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_format as sf
import synthetic_site as ss
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels, wait_head

pytestmark = pytest.mark.browser


def head_url(site, layer=0, head=0, hash_=""):
    return f"{site.url}models/{ss.MODEL}/L{layer}/H{head}/{hash_}"


def test_canvas_draws_query_and_key_colours(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    img = pixels(tab.page.locator(".atlas-canvas"))
    n_points = len(synthetic.synth.points) // 2
    # every point is a disc of ≥ 9 pixels in its exact colour
    assert count_rgb(img, QUERY_RGB) >= 9 * n_points
    assert count_rgb(img, KEY_RGB) >= 9 * n_points
    assert not tab.errors and not tab.dialogs


def test_points_land_where_their_coordinates_say(synthetic, tab):
    """Head rows are shuffled and ids are not row numbers: only a reader joining by id gets an affine map."""
    open_head(tab.page, head_url(synthetic, 1, 1))
    pts = synthetic.synth.points
    screen = np.array([client_position(tab.page, p.point_id) for p in pts])
    data = np.array([ss.coords(p, 1, 1, "pca-2d") for p in pts])
    for axis in (0, 1):
        design = np.c_[data[:, axis], np.ones(len(pts))]
        coef, *_ = np.linalg.lstsq(design, screen[:, axis], rcond=None)
        assert np.abs(design @ coef - screen[:, axis]).max() < 0.5
        assert (coef[0] > 0) == (axis == 0)  # screen y grows downwards
    img = pixels(tab.page.locator(".atlas-canvas"))
    box = tab.page.locator(".atlas-canvas").bounding_box()
    for p, (x, y) in zip(pts, screen):
        assert tuple(img[round(y - box["y"]), round(x - box["x"])]) == (KEY_RGB if p.is_key else QUERY_RGB)


def test_hover_shows_token_in_tooltip(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    point = synthetic.synth.point(sentence=0, position=2, is_key=0)
    tab.page.mouse.move(*client_position(tab.page, point.point_id))
    tip = tab.page.locator(".atlas-tooltip")
    tip.wait_for(state="visible")
    assert tip.locator(".atlas-tip-token").text_content() == "cat"
    assert tip.locator(".atlas-tip-kind").text_content() == "query"
    assert tip.locator(".atlas-tip-pos").text_content() == "position 3 of 5"
    assert tip.locator(".atlas-tip-sentence").text_content() == "sentence 0"
    key = synthetic.synth.point(sentence=2, position=4, is_key=1)
    tab.page.mouse.move(*client_position(tab.page, key.point_id))
    tab.page.wait_for_function("document.querySelector('.atlas-tip-token').textContent === '.'")
    assert tip.locator(".atlas-tip-kind").text_content() == "key"
    tab.page.mouse.move(2, 2)
    tip.wait_for(state="hidden")


def test_search_counts_and_highlights(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    expected = len(synthetic.synth.matching("the"))
    assert expected == 4
    for query in ["THE", " the ", "the"]:
        tab.page.fill(".atlas-search", "")
        tab.page.fill(".atlas-search", query)
        tab.page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{expected}'")
    assert tab.page.locator(".atlas-search-count").text_content() == "4 points"
    assert "search=the" in tab.page.url
    img = pixels(tab.page.locator(".atlas-canvas"))
    # only the hits keep their exact colours; everything else is dimmed
    assert 9 * 2 <= count_rgb(img, QUERY_RGB) <= 40 * 2
    assert 9 * 2 <= count_rgb(img, KEY_RGB) <= 40 * 2
    tab.page.fill(".atlas-search", "")
    tab.page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === ''")
    assert "search=" not in tab.page.url


def test_click_opens_sentence_view_with_weights(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    point = synthetic.synth.point(sentence=2, position=2, is_key=1)
    tab.page.mouse.click(*client_position(tab.page, point.point_id))
    view = tab.page.locator(".atlas-sentence")
    view.wait_for(state="visible")
    assert view.locator("text.atlas-token-q").all_text_contents() == ss.SENTENCES[2]
    assert view.locator("text.atlas-token-k").all_text_contents() == ss.SENTENCES[2]
    assert view.locator("text.atlas-token-k.is-focus").text_content() == "dog"
    assert f"point={point.point_id}" in tab.page.url
    assert tab.page.locator(".atlas-view").get_attribute("data-selected-sentence") == "2"
    # top-2 lines from the attention rows (the inputs/ files of layer 0): queries 0-3 reach [CLS] and the next token; query 4's
    # second target is [SEP], which has no key point; [SEP] itself has no query point
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.lines === '9'")
    raw = np.rint(ss.attention(6, 0) * 255) / 255
    weight = float(view.locator("line[data-q='3'][data-k='0']").get_attribute("data-weight"))
    assert weight == pytest.approx(raw[3, 0] / raw[3].sum(), abs=1e-3)
    tab.page.check(".atlas-hide-first")
    assert view.locator("line[data-k='0']").count() == 0
    weight = float(view.locator("line[data-q='3'][data-k='4']").get_attribute("data-weight"))
    assert weight == pytest.approx(raw[3, 4] / raw[3, 1:].sum(), abs=1e-3)
    view.locator("text.atlas-token-k[data-position='4']").click()
    assert view.locator("line[data-k='4']").count() == 0
    # the head's aggregate pattern: one bar per offset −5..5, heights from aggregate/L0H0.json
    _, means, _ = sf.relative_means([ss.attention(len(w), 0) for w in ss.SENTENCES])
    bars = view.locator(".atlas-aggregate rect")
    assert [int(o) for o in bars.evaluate_all("bs => bs.map(b => b.dataset.offset)")] == list(range(-5, 6))
    assert [float(m) for m in bars.evaluate_all("bs => bs.map(b => b.dataset.mean)")] == pytest.approx(means, abs=1e-6)
    tab.page.keyboard.press("Escape")
    view.wait_for(state="hidden")
    assert "point=" not in tab.page.url


STRONGEST = """async ([rows, n, k]) => {
  const { strongest } = await import(new URL('/assets/atlas/data.js', location.href).href);
  const w = Float32Array.from(rows.flat(), (b) => b / 255);
  return rows.map((_, r) => strongest(w, n, r, k).map((t) => [t.position, Math.round(t.weight * 255)]));
}"""


def test_attention_lines_are_each_rows_strongest_keys(synthetic, tab):
    """The lines of a selected sentence come from the attention rows (uint8 weights): per query the k largest
    weights, strongest first, ties to the lower position, zero weights never drawn."""
    rng = np.random.default_rng(3)
    n = 23
    rows = rng.choice([0, 0, 0, 1, 7, 7, 40, 200, 255], size=(40, n)).astype(int)
    rows[0] = 0  # a row with nothing to draw
    rows[1] = 5  # all tied: the lowest positions
    tab.page.goto(synthetic.url)
    for k in (1, 2, 5):
        got = tab.page.evaluate(STRONGEST, [rows.tolist(), n, k])
        want = [[[j, int(r[j])] for j in sorted(np.flatnonzero(r), key=lambda j: (-r[j], j))[:k]] for r in rows]
        assert got == want


def test_hostile_token_renders_as_text(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    point = synthetic.synth.point(sentence=1, position=1, is_key=0)
    assert point.text == ss.HOSTILE
    x, y = client_position(tab.page, point.point_id)
    tab.page.mouse.move(x, y)
    assert tab.page.locator(".atlas-tip-token").text_content() == ss.HOSTILE
    tab.page.mouse.click(x, y)
    tab.page.locator(".atlas-sentence").wait_for(state="visible")
    assert tab.page.locator("text.atlas-token-q").nth(1).text_content() == ss.HOSTILE
    tab.page.fill(".atlas-search", ss.HOSTILE)
    tab.page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === '2'")
    svg = tab.page.evaluate("document.querySelector('.atlas-view').atlasView.svgText()")
    assert "&lt;img src=x onerror=alert(1)&gt;" in svg and "<img" not in svg
    tab.page.wait_for_timeout(200)
    assert tab.page.locator("img[src='x']").count() == 0
    assert tab.page.evaluate("document.querySelectorAll('.atlas-view img:not(.atlas-fallback)').length") == 0
    assert tab.dialogs == []


def test_state_comes_from_the_url(synthetic, tab):
    point = synthetic.synth.point(sentence=0, position=1, is_key=1)
    open_head(tab.page, head_url(synthetic, 1, 0, f"#layout=tsne-2d&colour=mod5&search=cat&point={point.point_id}"))
    assert tab.page.locator("select[aria-label=layout]").input_value() == "tsne-2d"
    assert tab.page.locator("select[aria-label=colour]").input_value() == "mod5"
    assert tab.page.locator(".atlas-search-count").get_attribute("data-count") == "2"
    tab.page.locator(".atlas-sentence").wait_for(state="visible")
    assert tab.page.locator("text.atlas-token-q").all_text_contents() == ss.SENTENCES[0]
    assert ss.PLAIN_ATTENTION == (1, 0), "this head's attention file is the uncompressed blob"
    tab.page.wait_for_function("document.querySelectorAll('.atlas-sentence line').length > 0")
    x, y = client_position(tab.page, point.point_id)
    expected = np.array(ss.coords(point, 1, 0, "tsne-2d"))
    other = synthetic.synth.point(sentence=0, position=2, is_key=1)
    x2, y2 = client_position(tab.page, other.point_id)
    # in t-SNE coordinates the two keys differ only in y (position), not in x (sentence)
    assert abs(x - x2) < 0.5 and y2 > y
    assert expected[1] > np.array(ss.coords(other, 1, 0, "tsne-2d"))[1]
    # a plain anchor is not view state: it is left alone and does not reset the view
    tab.page.evaluate("location.hash = 'behaviour-scores'")
    tab.page.wait_for_timeout(100)
    assert tab.page.evaluate("location.hash") == "#behaviour-scores"
    assert tab.page.locator("select[aria-label=colour]").input_value() == "mod5"
    tab.page.locator("select[aria-label=colour]").select_option("norm")
    assert tab.page.evaluate("location.hash").startswith("#layout=tsne-2d&colour=norm&search=cat&point=")


def test_colour_encodings_3d_orbit_and_export(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    colour = tab.page.locator("select[aria-label=colour]")
    for value in ["position", "mod5", "norm", "frequency", "length", "punct", "qk"]:
        colour.select_option(value)
        tab.page.wait_for_function(f"location.hash.includes('colour={value}') || '{value}' === 'qk'")
        img = pixels(tab.page.locator(".atlas-canvas"))
        assert (count_rgb(img, QUERY_RGB) > 0) == (value == "qk")
        assert tab.page.locator(".atlas-legend-item").count() >= 1
    tab.page.locator("select[aria-label=layout]").select_option("pca-3d")
    pid = synthetic.synth.points[3].point_id
    before = client_position(tab.page, pid)
    box = tab.page.locator(".atlas-canvas").bounding_box()
    tab.page.mouse.move(box["x"] + 50, box["y"] + 50)
    tab.page.mouse.down()
    tab.page.mouse.move(box["x"] + 150, box["y"] + 90, steps=5)
    tab.page.mouse.up()
    after = client_position(tab.page, pid)
    assert np.hypot(after[0] - before[0], after[1] - before[1]) > 2
    assert count_rgb(pixels(tab.page.locator(".atlas-canvas")), KEY_RGB) > 0
    with tab.page.expect_download() as png:
        tab.page.click(".atlas-export-png")
    assert png.value.suggested_filename == f"{ss.MODEL}_L0H0_pca-3d.png"
    assert open(png.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with tab.page.expect_download() as svg:
        tab.page.click(".atlas-export-svg")
    assert open(svg.value.path(), encoding="utf-8").read().count("<circle") == len(synthetic.synth.points)
    assert not tab.errors


def test_pan_and_zoom_move_points(synthetic, tab):
    open_head(tab.page, head_url(synthetic))
    pid = synthetic.synth.points[0].point_id
    x0, y0 = client_position(tab.page, pid)
    box = tab.page.locator(".atlas-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tab.page.mouse.move(cx, cy)
    tab.page.mouse.wheel(0, -300)
    tab.page.wait_for_timeout(100)
    x1, y1 = client_position(tab.page, pid)
    assert np.hypot(x1 - cx, y1 - cy) > 1.3 * np.hypot(x0 - cx, y0 - cy)
    tab.page.mouse.move(cx + 5, cy + 5)
    tab.page.mouse.down()
    tab.page.mouse.move(cx + 45, cy + 25, steps=4)
    tab.page.mouse.up()
    x2, y2 = client_position(tab.page, pid)
    assert (x2 - x1, y2 - y1) == pytest.approx((40, 20), abs=1.5)


def test_schema_version_mismatch_is_explained(synthetic, tab):
    tab.page.goto(f"{synthetic.url}models/{ss.BAD_MODEL}/L0/H0/")
    error = tab.page.locator(".atlas-error")
    error.wait_for()
    text = error.text_content()
    assert f"schema version {sf.VERSION + 1}" in text and f"reads schema version {sf.VERSION}" in text
    tab.page.goto(f"{synthetic.url}models/{ss.BAD_MODEL}/")
    assert f"schema version {sf.VERSION + 1}" in tab.page.locator(".atlas-error").text_content()


def data_files(tab, model: str = ss.MODEL) -> list[str]:
    prefix = f"/data/{model}/"
    return sorted({u.split(prefix, 1)[1] for u in tab.requests if prefix in u})


def test_opening_fetches_one_layout_and_the_rest_on_demand(synthetic, tab):
    open_head(tab.page, head_url(synthetic, 1, 0))
    assert data_files(tab) == ["coords/L1H0_pca-2d.bin.gz", "heads/L1H0.json", "manifest.json", "tokens.arrow"]
    tab.page.locator("select[aria-label=layout]").select_option("tsne-2d")
    tab.page.wait_for_function("location.hash.includes('layout=tsne-2d')")
    tab.page.wait_for_function("document.querySelector('.atlas-view').atlasView.coords.layout === 'tsne-2d'")
    assert "coords/L1H0_tsne-2d.bin.gz" in data_files(tab) and "norms/L1H0.arrow" not in data_files(tab)
    # t-SNE coordinates: the keys of one sentence share x (sentence) and differ in y (position)
    a, b = (client_position(tab.page, synthetic.synth.point(0, p, 1).point_id) for p in (1, 2))
    assert abs(a[0] - b[0]) < 0.5 and b[1] > a[1] + 5
    tab.page.locator("select[aria-label=colour]").select_option("norm")
    tab.page.wait_for_function("!document.querySelector('.atlas-legend').textContent.includes('loading')")
    assert "norms/L1H0.arrow" in data_files(tab)
    assert not [f for f in data_files(tab) if f.startswith(("inputs/", "aggregate/"))]
    assert not tab.errors


def test_related_heads_link_to_their_pages(synthetic, tab):
    open_head(tab.page, head_url(synthetic, 0, 0))
    links = tab.page.locator(".atlas-related a")
    # (9, 9) names no head of the model: left out
    assert links.all_text_contents() == ["L1 H1", "L0 H1"]
    details = tab.page.locator(".atlas-related-detail").all_text_contents()
    assert details == [" · next-token · similarity 0.93", " · next-token · similarity 0.50"]
    links.first.click()
    wait_head(tab.page, 1, 1)
    assert tab.page.evaluate("location.pathname") == f"/models/{ss.MODEL}/L1/H1/"
    assert tab.page.locator(".atlas-related").count() == 0  # an empty list shows nothing
    open_head(tab.page, head_url(synthetic, 0, 1))
    assert tab.page.locator(".atlas-related").count() == 0  # no related field at all
    assert not tab.errors
