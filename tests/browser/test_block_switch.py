"""The block switcher of an encoder–decoder model (a tiny random T5 built over inline pairs): on a head page it
opens the same layer and head of the other block (the block's last layer when it has fewer), keeping layout, colour
and search; on a matrix page it opens the other block's matrix with the same state."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from atlas_build.pipeline import build
from helpers import client_position, wait_head
from test_build_encdec import MODELS, manifest_text

pytestmark = pytest.mark.browser
STATE = {"colour": "position", "search": "the"}  # neither is the default


@pytest.fixture(scope="module")
def t5_site(tmp_path_factory: pytest.TempPathFactory, serve) -> str:
    tmp = tmp_path_factory.mktemp("encdec-site")
    (tmp / "m.toml").write_text(manifest_text(MODELS["t5"][0]))
    build(tmp / "m.toml", tmp / "out", log=lambda msg: None)
    return serve(tmp / "out" / "site")


def _state(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


def test_head_page_switches_block_and_keeps_layer_head_and_view(t5_site, tab) -> None:
    page = tab.page
    start = "&".join(f"{k}={v}" for k, v in STATE.items())
    page.goto(f"{t5_site}models/m/decoder/L1/H3/#{start}")
    wait_head(page, 1, 3)
    assert page.locator(".atlas-block-select").input_value() == "decoder"
    page.locator(".atlas-block-select").select_option("encoder")
    page.wait_for_url("**/models/m/encoder/L1/H3/**")
    wait_head(page, 1, 3)
    assert _state(page.url) == STATE
    view = page.evaluate("(() => { const v = document.querySelector('.atlas-view'); "
                         "return {state: v.atlasView.state, data: v.dataset.data, block: v.dataset.block}; })()")
    assert {k: view["state"][k] for k in STATE} == STATE
    assert view["block"] == "encoder" and view["data"].endswith("data/m/encoder/")
    assert page.locator(".atlas-search").input_value() == "the"
    # decoder layer 2 has no encoder counterpart (2 encoder layers): the switcher opens the encoder's last layer
    page.goto(f"{t5_site}models/m/decoder/L2/H0/")
    wait_head(page, 2, 0)
    page.locator(".atlas-block-select").select_option("encoder")
    page.wait_for_url("**/models/m/encoder/L1/H0/**")
    wait_head(page, 1, 0)
    assert not tab.errors and not tab.dialogs


def test_matrix_page_switches_block_and_keeps_the_view(t5_site, tab) -> None:
    page = tab.page
    start = "&".join(f"{k}={v}" for k, v in STATE.items())
    page.goto(f"{t5_site}models/m/encoder/#{start}")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert page.locator(".atlas-matrix-cell").count() == 8
    page.locator(".atlas-block-select").select_option("decoder")
    page.wait_for_url("**/models/m/decoder/#*")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert urlsplit(page.url).path == "/models/m/decoder/" and _state(page.url) == STATE
    assert page.locator(".atlas-matrix-cell").count() == 12
    assert not tab.errors and not tab.dialogs


def test_cross_block_sentence_view_puts_decoder_tokens_left_and_encoder_tokens_right(t5_site, tab) -> None:
    """The cross block's head page: clicking a decoder token's query opens the bipartite view with the pair's decoder
    tokens as queries and its encoder tokens as keys, lines weighted by the model's own cross-attention."""
    page = tab.page
    page.goto(f"{t5_site}models/m/cross/L1/H2/")
    wait_head(page, 1, 2)
    assert page.locator(".atlas-block-select").input_value() == "cross"
    info = page.evaluate("""(() => {
      const m = document.querySelector('.atlas-view').atlasView.model;
      const row = m.sentences.get(0)[1];
      return {point: m.pointOfToken(row, false), keyOfQuery: m.pointOfToken(row, true), sides: Array.from(m.tokens.side),
              sentence: Array.from(m.tokens.sentence), text: m.tokens.text};
    })()""")
    assert info["keyOfQuery"] is None  # a decoder token has a query point only
    page.mouse.click(*client_position(page, info["point"]))
    view = page.locator(".atlas-sentence")
    view.wait_for(state="visible")
    rows = [i for i, s in enumerate(info["sentence"]) if s == 0]
    decoder = [info["text"][i] for i in rows if info["sides"][i] == 0]
    encoder = [info["text"][i] for i in rows if info["sides"][i] == 1]
    assert view.locator("text.atlas-token-q").all_text_contents() == decoder
    assert view.locator("text.atlas-token-k").all_text_contents() == encoder
    assert view.locator("text.atlas-col-label").all_text_contents() == ["keys (encoder)", "queries (decoder)"]
    assert view.locator("text.atlas-token-q.is-focus").text_content() == decoder[1]
    page.wait_for_function("document.querySelectorAll('.atlas-sentence line').length > 0")
    # every line runs from a decoder row to an encoder column; each row's weights sum to 1 over the shown keys
    lines = view.locator(".atlas-lines line").evaluate_all(
        "ls => ls.map(l => [Number(l.dataset.q), Number(l.dataset.k), Number(l.dataset.weight)])")
    n_dec = len(decoder)
    assert lines and all(q < n_dec <= k for q, k, _ in lines)
    by_row: dict[int, float] = {}
    for q, _, w in lines:
        by_row[q] = by_row.get(q, 0.0) + w
    assert all(0.9 <= s <= 1.0 + 1e-3 for s in by_row.values())
    bars = view.locator(".atlas-aggregate rect")
    assert bars.evaluate_all("bs => bs.map(b => Number(b.dataset.offset))")[0] == 0
    assert "key-side position" in view.locator(".atlas-aggregate h4").text_content()
    # the neuron view: decoder tokens as queries, encoder tokens as keys, positions counted within each side, and
    # the softmax row over the encoder tokens only
    page.wait_for_function("document.querySelector('.atlas-neuron').dataset.state === 'drawn'")
    assert page.locator(".atlas-neuron-query option").all_text_contents() == [f"{i}: {t}" for i, t in enumerate(decoder)]
    assert page.locator(".atlas-neuron-key option").all_text_contents() == [f"{i}: {t}" for i, t in enumerate(encoder)]
    assert page.locator(".atlas-neuron-softmax").count() == len(encoder)
    softmax = page.locator(".atlas-neuron-softmax").evaluate_all("bs => bs.map(b => Number(b.dataset.softmax))")
    assert sum(softmax) == pytest.approx(1.0, abs=1e-6)
    # the model view of the pair: every cross head as decoder rows x encoder columns
    page.goto(page.evaluate("document.querySelector('.atlas-model-view-link').href"))
    assert urlsplit(page.url).path == "/models/m/cross/inputs/0/"  # the block's own model view
    page.wait_for_function("(() => { const v = document.querySelector('.atlas-view'); "
                           "return v && v.dataset.state === 'drawn'; })()")
    sizes = page.evaluate("[...document.querySelectorAll('.atlas-mv-cell canvas')].map(c => [c.width, c.height])")
    assert len(sizes) == 3 * 4 and all(size == [len(encoder), len(decoder)] for size in sizes)
    assert not tab.errors and not tab.dialogs
