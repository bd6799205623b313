"""The image view, the patch colourings and the vision sorts on the site the real pipeline builds for
data_manifests/vision-tiny.toml."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from atlas_build.export.inputs import read_input_attention
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser
HEAT = np.array((0xFF, 0x7F, 0x0E), float)


def read_table(path) -> list[dict]:
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all().to_pylist()


def attention_block(model_dir, manifest: dict, sentence: int, layer: int, head: int) -> np.ndarray:
    """One head's n × n weights on one image, from the image's attention file of the head's layer."""
    path = model_dir / manifest["inputs"]["files"]["attention"].format(input=sentence, layer=layer)
    return read_input_attention(path).weights[(layer, head)] / 255


def _points(tokens: dict) -> list[dict]:
    """One dict per query/key point (point_id, token_id, is_key) from tokens.arrow's explicit point ids."""
    return sorted(({"point_id": t[name], "token_id": t["token_id"], "is_key": int(name == "key_point")}
                   for t in tokens.values() for name in ("query_point", "key_point") if t[name] is not None),
                  key=lambda p: p["point_id"])


def _model(root) -> tuple:
    model_dir = sorted((root / "data").glob("*/manifest.json"))[0].parent
    return model_dir, json.loads((model_dir / "manifest.json").read_text("utf-8"))


def test_clicking_a_real_patch_point_draws_its_heatmap(vision_site, tab):
    url, root = vision_site
    model_dir, manifest = _model(root)
    rows, cols = manifest["model"]["patch_grid"]
    prefix = manifest["model"]["num_prefix_tokens"]
    patch = manifest["model"]["patch_size"]
    head = manifest["heads"][-1]
    tokens = {t["token_id"]: t for t in read_table(model_dir / "tokens.arrow")}
    points = _points(tokens)
    target = next(p for p in points if not p["is_key"] and tokens[p["token_id"]]["patch_row"] == rows // 2
                  and tokens[p["token_id"]]["patch_col"] == cols // 2)
    page = tab.page
    open_head(page, f"{url}models/{model_dir.name}/L{head['layer']}/H{head['head']}/")
    img = pixels(page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    page.mouse.click(*client_position(page, target["point_id"]))
    page.wait_for_function("document.querySelector('.atlas-image-view')?.dataset.state === 'drawn'")
    assert page.locator(".atlas-sentence").count() == 0
    # whatever point the click landed on (points may overlap), its heatmap must match the attention file
    chosen = int(re.search(r"point=(\d+)", page.url).group(1))
    p = next(q for q in points if q["point_id"] == chosen)
    tok = tokens[p["token_id"]]
    image = next(im for im in manifest["images"] if im["image_id"] == tok["sentence_id"])
    assert page.locator(".atlas-image-title").text_content().startswith(f"Image {image['name']} ·")
    w = attention_block(model_dir, manifest, tok["sentence_id"], head["layer"], head["head"])
    weights = w[:, tok["position"]] if p["is_key"] else w[tok["position"]]
    best = prefix + int(np.argmax(weights[prefix:]))
    r, c = divmod(best - prefix, cols)
    heat = pixels(page.locator(".atlas-image-heatmap"))
    size = heat.shape[0] / rows
    shown = heat[int((r + 0.5) * size), int((c + 0.5) * size)].astype(float)
    source = np.asarray(Image.open(model_dir / image["file"]).convert("RGB"), float)
    y, x = r * patch + patch // 2, c * patch + patch // 2
    centre = source[y - 1:y + 1, x - 1:x + 1]
    expected = 0.15 * centre.reshape(-1, 3) + 0.85 * HEAT
    assert np.abs(expected - shown).max(axis=1).min() <= 4

    page.locator("select[aria-label=colour]").select_option("patch-row")
    page.wait_for_function("location.hash.includes('colour=patch-row')")
    assert count_rgb(pixels(page.locator(".atlas-canvas")), QUERY_RGB) == 0
    assert not tab.errors and not tab.dialogs


PATCH_COLOURS = ("patch-row", "patch-col", "hue", "brightness", "pixels")


def _select_colour(page, value: str) -> None:
    page.locator("select[aria-label=colour]").select_option(value)
    page.wait_for_function(f"location.hash.includes('colour={value}')")
    page.wait_for_function("!(document.querySelector('.atlas-legend')?.textContent || '').includes('loading')")
    page.wait_for_timeout(150)


def _redrawn(page, locator, before: np.ndarray, tries: int = 40) -> bool:
    """Whether the element's rendered pixels come to differ from ``before`` (points load lazily)."""
    for _ in range(tries):
        if (pixels(locator) != before).any():
            return True
        page.wait_for_timeout(250)
    return False


def test_patch_colourings_in_single_and_matrix_views(vision_site, tab):
    """Patch row, column, mean hue, mean brightness and own pixels are offered and recolour both views."""
    url, root = vision_site
    model_dir, manifest = _model(root)
    page = tab.page
    head = manifest["heads"][0]
    open_head(page, f"{url}models/{model_dir.name}/L{head['layer']}/H{head['head']}/")
    offered = page.locator("select[aria-label=colour] option").evaluate_all("os => os.map(o => o.value)")
    assert set(PATCH_COLOURS) <= set(offered)
    canvas = page.locator(".atlas-canvas")
    qk = pixels(canvas)
    for value in PATCH_COLOURS:
        _select_colour(page, value)
        img = pixels(canvas)
        assert (img != qk).any(), value
        if value != "pixels":  # sprites keep a query/key frame; the others recolour every patch point
            assert count_rgb(img, QUERY_RGB) == 0 and count_rgb(img, KEY_RGB) == 0, value
    page.goto(f"{url}models/{model_dir.name}/")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    offered = page.locator("select[aria-label=colour] option").evaluate_all("os => os.map(o => o.value)")
    assert set(PATCH_COLOURS) <= set(offered)
    cell = page.locator(".atlas-matrix-cell").first  # whatever draws the head (thumbnail or canvas), as shown
    page.wait_for_timeout(300)
    qk = pixels(cell)
    for value in PATCH_COLOURS:
        page.locator("select[aria-label=colour]").select_option(value)
        page.wait_for_function(f"location.hash.includes('colour={value}')")
        assert _redrawn(page, cell, qk), value
    assert not tab.errors and not tab.dialogs


def test_matrix_view_sorts_heads_by_vision_scores(vision_site, tab):
    url, root = vision_site
    model_dir, manifest = _model(root)
    page = tab.page
    page.goto(f"{url}models/{model_dir.name}/")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    for metric in ("hue_sorting", "grating_angle_sorting", "mean_distance"):
        page.locator("select[aria-label='sort heads']").select_option(f"{metric}:desc")
        best = max(manifest["heads"], key=lambda h: (h["metrics"][metric], -h["layer"], -h["head"]))
        first = page.locator(".atlas-matrix-cell:not([hidden])").first
        assert (first.get_attribute("data-layer"), first.get_attribute("data-head")) == (str(best["layer"]),
                                                                                         str(best["head"]))
    assert not tab.errors and not tab.dialogs
