"""The model view (every layer × head on one input) in Debian chromium: its heatmap pixels are the attention files'
weights, hidden tokens re-normalize the rows, GQA groups are marked, a cell opens its head with the input selected,
and the sentence view, the image view and the model page lead to it."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_model_view as smv
from atlas_build.export import read_head_attention, read_manifest
from helpers import wait_head

pytestmark = pytest.mark.browser
DRAWN = "(() => { const v = document.querySelector('.atlas-view'); return v && v.dataset.state === 'drawn'; })()"
TOL = 0.006  # √weight in 8-bit colour: one level is at most 2/254 of √w, i.e. < 0.004 of w


@pytest.fixture(scope="module")
def mv(tmp_path_factory: pytest.TempPathFactory, serve):
    work = tmp_path_factory.mktemp("model-view")
    synth = smv.build_site(work)
    return serve(work / "site"), work / "site", synth


def open_model_view(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(DRAWN)


def drawn_weights(page) -> dict[tuple[int, int], np.ndarray]:
    """Each heatmap cell's weights, read back from its canvas pixels (blue channel: background → heat colour,
    colour = √weight)."""
    cells = page.evaluate("""() => [...document.querySelectorAll('.atlas-mv-cell')].map((c) => {
      const cv = c.querySelector('canvas');
      const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      const blue = Array.from(d.filter((_, i) => i % 4 === 2));
      return { layer: +c.dataset.layer, head: +c.dataset.head, n: cv.width, blue };
    })""")
    view = page.evaluate("(() => { const d = document.querySelector('.atlas-view').dataset; "
                         "return [d.heatFrom, d.heatTo]; })()")
    lo, hi = (int(c[5:7], 16) for c in view)
    out = {}
    for c in cells:
        t = (np.array(c["blue"], float) - lo) / (hi - lo)
        out[(c["layer"], c["head"])] = (t ** 2).reshape(c["n"], c["n"])
    return out


def test_heatmaps_draw_the_attention_files_weights(mv, tab) -> None:
    url, site, synth = mv
    sid = synth.input_ids[2]
    open_model_view(tab.page, f"{url}models/{smv.MODEL}/inputs/{sid}/")
    drawn = drawn_weights(tab.page)
    assert sorted(drawn) == [(layer, h) for layer in range(smv.LAYERS) for h in range(smv.HEADS)]
    data = site / "data" / smv.MODEL
    for (layer, h), w in drawn.items():
        first, stored = read_head_attention(data, layer, h)[sid]
        assert first == synth.tokens[sid][0].token_id
        assert np.abs(w - stored).max() < TOL, (layer, h)
        assert np.abs(stored - synth.attention[(sid, layer, h)]).max() <= 0.5 / 255 + 1e-9
    labels = tab.page.locator(".atlas-mv-label").all_text_contents()
    assert labels[:2] == ["H0 · synthetic-0", "H1 · synthetic-1"]
    chips = tab.page.locator(".atlas-mv-token").all_text_contents()
    assert smv.HOSTILE in chips and tab.page.locator(".atlas-mv-tokens img").count() == 0
    assert not tab.dialogs and not tab.errors, (tab.dialogs, tab.errors)


def test_hidden_tokens_renormalize_every_row(mv, tab) -> None:
    url, _, synth = mv
    sid = synth.input_ids[0]
    open_model_view(tab.page, f"{url}models/{smv.MODEL}/inputs/{sid}/")
    tab.page.locator(".atlas-hide-first").check()
    tab.page.wait_for_function("location.hash.includes('first=hide')")
    drawn = drawn_weights(tab.page)
    for (layer, h), w in drawn.items():
        expect = synth.stored(sid, layer, h).copy()
        expect[:, 0] = 0
        expect[1:] /= expect[1:].sum(axis=1, keepdims=True)
        expect[0] = 0
        assert np.abs(w - expect).max() < TOL, (layer, h)
    rows = tab.page.evaluate("(() => { const v = document.querySelector('.atlas-view').atlasView; "
                             "return Array.from(v.cellWeights(1, 2)); })()")
    rows = np.array(rows).reshape(len(synth.tokens[sid]), -1)
    assert np.allclose(rows[1:].sum(axis=1), 1.0, atol=1e-6) and not rows[:, 0].any() and not rows[0].any()
    assert np.allclose(rows[1, 1], 1.0), "causal: the second token's only visible key is itself"
    # special tokens: here the first token again, so the picture is the same
    tab.page.locator(".atlas-hide-first").uncheck()
    tab.page.locator(".atlas-hide-special").check()
    again = drawn_weights(tab.page)
    assert all(np.abs(again[k] - drawn[k]).max() < 1e-9 for k in drawn)


def test_gqa_cells_are_marked_by_their_key_head(mv, tab) -> None:
    url, _, synth = mv
    open_model_view(tab.page, f"{url}models/{smv.MODEL}/inputs/{synth.input_ids[1]}/")
    marks = tab.page.evaluate("[...document.querySelectorAll('.atlas-mv-cell')].map((c) => "
                              "[+c.dataset.head, c.querySelector('.atlas-mv-kv').textContent, "
                              "c.querySelector('.atlas-mv-kv').className])")
    for head, text, cls in marks:
        assert text == f"kv{smv.KV_OF[head]}" and f"atlas-mv-kv-{smv.KV_OF[head]}" in cls
    assert "2 query heads share each of the 2 key/value heads" in tab.page.locator(".atlas-mv-note").inner_text()


def test_lines_mode_draws_every_head(mv, tab) -> None:
    url, _, synth = mv
    open_model_view(tab.page, f"{url}models/{smv.MODEL}/inputs/{synth.input_ids[0]}/#mode=lines")
    inked = tab.page.evaluate("""() => [...document.querySelectorAll('.atlas-mv-canvas')].map((cv) => {
      const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; })""")
    assert len(inked) == smv.LAYERS * smv.HEADS and min(inked) > 20


def test_a_cell_opens_its_head_with_the_input_selected(mv, tab) -> None:
    url, _, synth = mv
    sid = synth.input_ids[2]
    open_model_view(tab.page, f"{url}models/{smv.MODEL}/inputs/{sid}/")
    tab.page.locator(".atlas-mv-token").nth(3).click()
    tab.page.wait_for_function("location.hash.includes('token=3')")
    tab.page.locator('.atlas-mv-cell[data-layer="1"][data-head="3"]').click()
    wait_head(tab.page, 1, 3)
    point = tab.page.evaluate("document.querySelector('.atlas-view').atlasView.state.point")
    assert point == smv.point_of(synth, sid, 3)
    tab.page.wait_for_function("document.querySelector('.atlas-sentence-title')?.textContent.startsWith('Sentence')")
    assert tab.page.locator(".atlas-sentence-title").inner_text().startswith(f"Sentence {sid} ·")
    link = tab.page.locator(".atlas-model-view-link")
    assert link.get_attribute("href").endswith(f"/models/{smv.MODEL}/inputs/{sid}/")
    link.click()
    tab.page.wait_for_function(DRAWN)
    assert tab.page.evaluate("document.querySelector('.atlas-view').dataset.input") == str(sid)


def test_real_build_model_page_lists_featured_inputs_and_views_match(tiny_site, tab) -> None:
    url, site = tiny_site
    data = site / "data" / "tiny-bert"
    featured = read_manifest(data / "manifest.json")["inputs"]["featured"]
    tab.page.goto(f"{url}models/tiny-bert/")
    links = tab.page.locator("#featured-inputs + p + ul a")
    assert [a.get_attribute("href") for a in links.all()] == [f"inputs/{sid}/" for sid in featured]
    links.nth(0).click()
    tab.page.wait_for_function(DRAWN)
    sid = featured[0]
    for layer in range(2):
        for head in range(4):
            got = tab.page.evaluate("Array.from(document.querySelector('.atlas-view').atlasView"
                                    f".cellWeights({layer}, {head}))")
            _, stored = read_head_attention(data, layer, head)[sid]
            assert np.abs(np.array(got).reshape(stored.shape) - stored).max() < 1e-6
    tab.page.goto(f"{url}models/tiny-bert/inputs/4/")
    tab.page.wait_for_function(DRAWN)
    assert "<img src=x onerror=alert(1)>" in tab.page.locator(".atlas-input-text").inner_text()
    assert tab.page.locator("article img").count() == 0 and not tab.dialogs and not tab.errors


def test_image_model_view_draws_the_selected_patch_row(vision_site, tab) -> None:
    url, site = vision_site
    data = site / "data" / "tiny-dinov2"
    manifest = read_manifest(data / "manifest.json")
    tab.page.goto(f"{url}models/tiny-dinov2/inputs/2/")
    tab.page.wait_for_function(DRAWN)
    rows, cols = manifest["model"]["patch_grid"]
    prefix = manifest["model"]["num_prefix_tokens"]
    centre = prefix + rows // 2 * cols + cols // 2
    assert tab.page.evaluate("document.querySelector('.atlas-view').dataset.focus") == str(centre)
    assert tab.page.locator(".atlas-mv-cell").count() == len(manifest["heads"])

    def check(position: int) -> None:
        for h in manifest["heads"]:
            got = tab.page.evaluate("Array.from(document.querySelector('.atlas-view').atlasView.cellWeights("
                                    f"{h['layer']}, {h['head']}))")
            _, stored = read_head_attention(data, h["layer"], h["head"], manifest)[2]
            assert np.abs(np.array(got) - stored[position]).max() < 1e-6

    check(centre)
    box = tab.page.locator(".atlas-mv-picker").bounding_box()
    tab.page.mouse.click(box["x"] + 2, box["y"] + 2)  # the top-left patch
    tab.page.wait_for_function(f"document.querySelector('.atlas-view').dataset.focus === '{prefix}'")
    check(prefix)
    peaks = tab.page.evaluate("[...document.querySelectorAll('.atlas-mv-canvas')].map((c) => +c.dataset.peak)")
    assert all(p > 0 for p in peaks)
    tab.page.goto(f"{url}models/tiny-dinov2/L0/H1/")
    wait_head(tab.page)
    tab.page.evaluate("(() => { const v = document.querySelector('.atlas-view').atlasView; "
                      "v.select(v.model.pointAt(2, 5, false)); })()")
    link = tab.page.locator(".atlas-image-view .atlas-model-view-link")
    link.wait_for(state="visible")
    assert link.get_attribute("href").endswith("/models/tiny-dinov2/inputs/2/")
    assert not tab.errors, tab.errors


def test_model_view_page_is_reached_by_search(tiny_site) -> None:
    _, site = tiny_site
    index = (site / "search" / "search_index.json").read_text("utf-8")
    assert '"location":"models/tiny-bert/inputs/5/"' in index.replace(" ", "")
    assert "Paris is the capital of France" in index
