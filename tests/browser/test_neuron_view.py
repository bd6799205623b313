"""The neuron view on the head page's sentence panel, in Debian chromium: q, k and q⊙k of a query–key pair of a
featured input, their sum (equal to the score from the exported vectors), the layer's scaling from the manifest,
and a softmax that equals the exported attention row within float16 and 8-bit error; the pair follows the sentence
view's lines; other inputs offer the featured ones."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_model_view as smv
from atlas_build.capture import load_capture, read_layer
from atlas_build.export import read_manifest
from helpers import wait_head

pytestmark = pytest.mark.browser
DRAWN = "document.querySelector('.atlas-neuron')?.dataset.state === 'drawn'"
QUANT = 0.5 / 255  # the attention files' rounding


@pytest.fixture(scope="module")
def mv(tmp_path_factory: pytest.TempPathFactory, serve):
    work = tmp_path_factory.mktemp("neuron-view")
    synth = smv.build_site(work)
    return serve(work / "site"), synth


def open_pair(page, url: str, point: int) -> None:
    page.goto(f"{url}#point={point}")
    wait_head(page)
    page.wait_for_function(DRAWN)


def state(page) -> dict:
    return page.evaluate("({ ...document.querySelector('.atlas-neuron').dataset })")


def test_sum_and_softmax_are_the_exported_score_and_attention(mv, tab) -> None:
    url, synth = mv
    sid, layer, head, i = synth.input_ids[2], 1, 2, 4
    open_pair(tab.page, f"{url}models/{smv.MODEL}/L{layer}/H{head}/", smv.point_of(synth, sid, i))
    s = state(tab.page)
    q = synth.q[(sid, layer, head)].astype(np.float64)
    k = synth.k[(sid, layer, smv.KV_OF[head])].astype(np.float64)
    stored = synth.stored(sid, layer, head)
    j = int(np.argmax(stored[i]))
    assert (int(s["input"]), int(s["query"]), int(s["key"])) == (sid, i, j), "default key: the row's strongest"
    assert float(s["scaling"]) == smv.SCALING, "the manifest's scaling, not 1/√d"
    assert float(s["score"]) == pytest.approx(q[i] @ k[j], abs=1e-9)
    assert float(s["scaled"]) == pytest.approx(q[i] @ k[j] * smv.SCALING, abs=1e-9)
    assert abs(float(s["softmax"]) - stored[i, j]) <= QUANT + 1e-3
    assert float(s["attention"]) == pytest.approx(stored[i, j], abs=1e-6)
    bars = tab.page.evaluate("[...document.querySelectorAll('.atlas-neuron-softmax')].map((b) => "
                             "[+b.dataset.key, +b.dataset.softmax, +b.dataset.attention])")
    assert [b[0] for b in bars] == list(range(i + 1)), "causal: keys up to the query"
    soft = np.array([b[1] for b in bars])
    assert soft.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.abs(soft - stored[i, : i + 1]).max() <= QUANT + 1e-3
    assert np.abs(soft - synth.attention[(sid, layer, head)][i, : i + 1]).max() < 1e-9
    dims = tab.page.evaluate("['q', 'k', 'q⊙k'].map((r) => [...document.querySelectorAll("
                             "`.atlas-neuron-row[data-row='${r}'] rect`)].map((b) => +b.dataset.value))")
    assert np.allclose(dims[0], q[i]) and np.allclose(dims[1], k[j]) and np.allclose(dims[2], q[i] * k[j])
    assert sum(dims[2]) == pytest.approx(float(s["score"]), abs=1e-9)
    assert "post-rotary" in tab.page.locator(".atlas-neuron-note").inner_text()
    assert not tab.errors, tab.errors


def test_the_pair_follows_the_selects_and_the_sentence_views_lines(mv, tab) -> None:
    url, synth = mv
    sid, layer, head = synth.input_ids[0], 0, 1
    open_pair(tab.page, f"{url}models/{smv.MODEL}/L{layer}/H{head}/", smv.point_of(synth, sid, 5))
    q = synth.q[(sid, layer, head)].astype(np.float64)
    k = synth.k[(sid, layer, smv.KV_OF[head])].astype(np.float64)
    tab.page.locator(".atlas-neuron-key").select_option("2")
    tab.page.wait_for_function("document.querySelector('.atlas-neuron').dataset.key === '2'")
    assert float(state(tab.page)["score"]) == pytest.approx(q[5] @ k[2], abs=1e-9)
    tab.page.locator('.atlas-bipartite line[data-q="3"][data-k="1"]').dispatch_event("mouseover")
    tab.page.wait_for_function("document.querySelector('.atlas-neuron').dataset.query === '3'")
    s = state(tab.page)
    assert s["key"] == "1" and float(s["score"]) == pytest.approx(q[3] @ k[1], abs=1e-9)
    assert tab.page.locator(".atlas-neuron-key option[value='4']").is_disabled(), "causal: no later keys"


def test_an_input_without_vectors_offers_the_featured_ones(mv, tab) -> None:
    url, synth = mv
    sid = synth.input_ids[1]
    tab.page.goto(f"{url}models/{smv.MODEL}/L0/H0/#point={smv.point_of(synth, sid, 1)}")
    wait_head(tab.page)
    tab.page.wait_for_function("document.querySelector('.atlas-neuron')?.dataset.state === 'not-featured'")
    picks = tab.page.locator(".atlas-neuron-pick")
    featured = [synth.input_ids[i] for i in smv.FEATURED]
    assert [int(b.get_attribute("data-input")) for b in picks.all()] == featured
    assert smv.HOSTILE in picks.nth(0).inner_text() and tab.page.locator(".atlas-neuron img").count() == 0
    picks.nth(0).click()
    tab.page.wait_for_function(DRAWN)
    assert state(tab.page)["input"] == str(featured[0])
    assert not tab.dialogs and not tab.errors, (tab.dialogs, tab.errors)


def test_real_build_neuron_view_equals_the_captured_vectors_and_attention(tiny_site, tiny_build, tab) -> None:
    url, site = tiny_site
    manifest = read_manifest(site / "data" / "tiny-bert" / "manifest.json")
    sid, layer, head = manifest["inputs"]["vectors"][0], 1, 2
    cap_dir = next((tiny_build / "cache" / "tiny-bert").glob("capture-*"))
    tok = load_capture(cap_dir).tokens
    rows = np.flatnonzero(tok.sentence_id == sid)
    rows = rows[np.argsort(tok.position[rows])]
    tab.page.goto(f"{url}models/tiny-bert/L{layer}/H{head}/")
    wait_head(tab.page)
    tab.page.evaluate(f"(() => {{ const v = document.querySelector('.atlas-view').atlasView; "
                      f"v.select(v.model.pointAt({sid}, 2, false)); }})()")
    tab.page.wait_for_function(DRAWN)
    lc = read_layer(cap_dir, layer)
    q = lc.q[rows, head].astype(np.float64)
    k = lc.k[rows, manifest["model"]["kv_head_of_query"][head]].astype(np.float64)
    attention = lc.attention(sid)[head]
    for key in range(len(rows)):
        tab.page.locator(".atlas-neuron-key").select_option(str(key))
        tab.page.wait_for_function(f"document.querySelector('.atlas-neuron').dataset.key === '{key}'")
        s = state(tab.page)
        assert float(s["score"]) == pytest.approx(q[2] @ k[key], rel=1e-6, abs=1e-9)
        assert float(s["scaling"]) == manifest["model"]["scaling"]
        assert abs(float(s["softmax"]) - attention[2, key]) < 1e-3, "the model's own probability"
