"""The views on the site the real pipeline builds for data_manifests/tiny.toml."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from helpers import KEY_RGB, QUERY_RGB, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser


def first_model(root):
    manifest_path = sorted((root / "data").glob("*/manifest.json"))[0]
    return manifest_path.parent.name, json.loads(manifest_path.read_text("utf-8"))


def expected_hits(data_dir, word: str, layer: int, head: int) -> int:
    """Points of one head whose token, stripped of subword markers, equals `word` (read with pyarrow)."""
    def read(name):
        with pa.memory_map(str(data_dir / name)) as src:
            return pa.ipc.open_file(src).read_all().to_pylist()

    texts = {t["token_id"]: t["text"] for t in read("tokens.arrow")}
    token_of = {p["point_id"]: p["token_id"] for p in read("points.arrow")}
    ids = [r["point_id"] for r in read(f"L{layer}H{head}.arrow")]
    norm = lambda s: s.lstrip("#Ġ▁").strip().lower()  # noqa: E731
    return sum(norm(texts[token_of[i]]) == word for i in ids)


def test_real_head_page_draws_both_colours_and_searches(tiny_site, tab):
    url, root = tiny_site
    model, manifest = first_model(root)
    last = manifest["heads"][-1]
    open_head(tab.page, f"{url}models/{model}/L{last['layer']}/H{last['head']}/")
    img = pixels(tab.page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    want = expected_hits(root / "data" / model, "the", last["layer"], last["head"])
    assert want > 0
    tab.page.fill(".atlas-search", "the")
    tab.page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{want}'")
    assert tab.page.locator(".atlas-side-title").text_content() == f"Layer {last['layer']} · Head {last['head']}"
    assert tab.page.locator(".atlas-head-label").text_content() == last["label"]
    assert not tab.errors and not tab.dialogs
    assert tab.page.locator("img[src='x']").count() == 0


def test_real_matrix_page_has_one_cell_per_head(tiny_site, tab):
    url, root = tiny_site
    model, manifest = first_model(root)
    tab.page.goto(f"{url}models/{model}/")
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    cells = tab.page.locator(".atlas-matrix-cell")
    assert cells.count() == len(manifest["heads"])
    cells.nth(1).click()
    h = manifest["heads"][1]
    tab.page.wait_for_function(f"(() => {{ const v = document.querySelector('.atlas-view'); return v && "
                               f"v.dataset.view === 'head' && v.dataset.state === 'ready' && "
                               f"v.dataset.head === '{h['head']}'; }})()")
    img = pixels(tab.page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert not tab.errors and not tab.dialogs
