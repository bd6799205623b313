"""The block switcher of an encoder–decoder model (a tiny random T5 built over inline pairs): on a head page it
opens the same layer and head of the other block (the block's last layer when it has fewer), keeping layout, colour
and search; on a matrix page it opens the other block's matrix with the same state."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from atlas_build.pipeline import build
from helpers import wait_head
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
