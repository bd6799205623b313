"""The value view and its flow panel in chromium over the real tiny site: the panel's contributions a_ij·‖v_j‖ and
‖Σ a_ij v_j‖ are the exported attention and norm files' numbers, the value points are drawn in the view's colours,
and a value point click selects its token's query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyarrow as pa
import pyarrow.ipc as ipc

from atlas_build.export import read_value_norms
from atlas_build.export.inputs import read_input_attention
from helpers import KEY_RGB, count_rgb, open_head, pixels

MODEL = "tiny-bert"


def _attention(data: Path, sid: int, layer: int, head: int) -> np.ndarray:
    """One head's n × n weight bytes on one input, from the input's attention file of the head's layer."""
    return read_input_attention(data / "inputs" / f"S{sid}_L{layer}.bin.gz").weights[(layer, head)]


def _norms(path: Path, kind: str) -> tuple[dict[int, tuple[float, ...]], int, int]:
    """token id → its norms (one per column) of a value norms file, with the layer and head it names."""
    f = read_value_norms(path)
    assert f.kind == kind
    return {int(t): tuple(float(x) for x in row) for t, row in zip(f.token_id, f.norms)}, f.layer, f.index


def _tokens(site: Path) -> pa.Table:
    return ipc.open_file(pa.memory_map(str(site / "data" / MODEL / "tokens.arrow"))).read_all()


def test_flow_panel_shows_the_exported_norms_weighted_by_attention(tiny_site, tab):
    url, site = tiny_site
    data = site / "data" / MODEL
    layer, head = 1, 2
    kv = json.loads((data / "heads" / f"L{layer}H{head}.json").read_text())["kv_head"]
    open_head(tab.page, f"{url}models/{MODEL}/L{layer}/H{head}/")
    tab.page.locator(".atlas-values").scroll_into_view_if_needed()  # its files load when it comes into view
    tab.page.wait_for_function("document.querySelector('.atlas-view').atlasView.detail.values.coords")
    tok = _tokens(site).to_pydict()
    row = next(r for r in range(len(tok["token_id"])) if tok["position"][r] == 3)
    qpoint = tok["query_point"][row]
    tab.page.evaluate(f"document.querySelector('.atlas-view').atlasView.select({qpoint})")
    tab.page.wait_for_function("document.querySelector('.atlas-values').dataset.outputNorm")
    flow = tab.page.evaluate("(() => { const f = document.querySelector('.atlas-view').atlasView.detail.values.flow;"
                             " return {norm: f.outputNorm, total: f.total, sentence: f.sentence,"
                             " position: f.position, terms: f.terms}; })()")
    sid = tok["sentence_id"][row]
    assert (flow["sentence"], flow["position"]) == (sid, 3)
    attn = _attention(data, sid, layer, head)
    value_norms, file_layer, file_kv = _norms(data / "values" / "norms" / f"L{layer}V{kv}.bin.gz", "norms")
    outputs, out_layer, out_head = _norms(data / "values" / "outputs" / f"L{layer}H{head}.bin.gz", "outputs")
    assert (file_layer, file_kv, out_layer, out_head) == (layer, kv, layer, head)
    by_pos = {tok["position"][r]: tok["token_id"][r] for r in range(len(tok["token_id"])) if tok["sentence_id"][r] == sid}
    assert (flow["norm"], flow["total"]) == outputs[by_pos[3]]  # the build's float32s, as stored
    assert 0 < flow["norm"] <= flow["total"] * (1 + 1e-6)  # ‖Σ a v‖ ≤ Σ a ‖v‖
    a = np.float32(attn[3] / np.float32(255)).astype(np.float64)  # the viewer's weights: byte / 255 in float32
    contributions = sorted((a[j] * value_norms[by_pos[j]][0] for j in range(len(a)) if a[j] > 0), reverse=True)
    np.testing.assert_allclose([t["contribution"] for t in flow["terms"]], contributions, rtol=1e-12)
    assert flow["total"] == pytest.approx(sum(contributions), rel=0.05)  # the listed weights are rounded to 1/255
    panel = tab.page.locator(".atlas-flow")
    assert panel.locator("li").count() == min(8, len(contributions))
    assert f"‖Σ a·v‖ = {flow['norm']:.3f}" in panel.text_content()
    assert f"Σ a·‖v‖ = {flow['total']:.3f}; ratio {flow['norm'] / flow['total']:.3f}" in panel.text_content()
    assert not tab.errors


def test_value_points_are_drawn_and_pick_their_query(tiny_site, tab):
    url, site = tiny_site
    open_head(tab.page, f"{url}models/{MODEL}/L0/H1/")
    assert tab.page.evaluate("document.querySelector('.atlas-view').atlasView.detail.values.coords") is None
    tab.page.locator(".atlas-values").scroll_into_view_if_needed()
    tab.page.wait_for_function("(() => { const v = document.querySelector('.atlas-view').atlasView;"
                               " return v.detail.values && v.detail.values.attrs; })()")
    img = pixels(tab.page.locator(".atlas-value-plot canvas"))
    assert count_rgb(img, KEY_RGB) > 20  # query/key colouring: every value point in the key colour
    n_points = tab.page.evaluate("document.querySelector('.atlas-view').atlasView.detail.values.attrs.n")
    assert n_points == len(_tokens(site))  # one value point per token (tiny has no Zipf cap)
    tab.page.select_option(".atlas-toolbar select[aria-label='colour']", "position")
    tab.page.wait_for_function("document.querySelector('.atlas-view').atlasView.detail.values.colour === 'position'")
    pos = tab.page.evaluate("(() => { const vv = document.querySelector('.atlas-view').atlasView.detail.values;"
                            " const [x, y] = vv.scatter.project(5); const r = vv.scatter.canvas.getBoundingClientRect();"
                            " return {x: r.left + x, y: r.top + y, token: vv.coords.tokenIds[vv.scatter.pick(x, y)]}; })()")
    tab.page.mouse.click(pos["x"], pos["y"])
    tab.page.wait_for_function("document.querySelector('.atlas-values').dataset.outputNorm")
    selected = tab.page.evaluate("document.querySelector('.atlas-view').atlasView.state.point")
    tok = _tokens(site).to_pydict()
    assert selected == tok["query_point"][tok["token_id"].index(pos["token"])]
    assert not tab.errors
