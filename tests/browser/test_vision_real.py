"""The image view on the site the real pipeline builds for data_manifests/vision-tiny.toml."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser
HEAT = np.array((0xFF, 0x7F, 0x0E), float)


def read_table(path) -> list[dict]:
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all().to_pylist()


def attention_block(path, sentence: int) -> np.ndarray:
    raw = path.read_bytes()
    count = struct.unpack_from("<I", raw, 8)[0]
    for k in range(count):
        sid, _, n, offset = struct.unpack_from("<IIII", raw, 12 + 16 * k)
        if sid == sentence:
            return np.frombuffer(raw, np.uint8, n * n, offset).reshape(n, n) / 255
    raise KeyError(sentence)


def test_clicking_a_real_patch_point_draws_its_heatmap(vision_site, tab):
    url, root = vision_site
    model_dir = sorted((root / "data").glob("*/manifest.json"))[0].parent
    manifest = json.loads((model_dir / "manifest.json").read_text("utf-8"))
    rows, cols = manifest["model"]["patch_grid"]
    prefix = manifest["model"]["num_prefix_tokens"]
    patch = manifest["model"]["patch_size"]
    head = manifest["heads"][-1]
    tokens = {t["token_id"]: t for t in read_table(model_dir / "tokens.arrow")}
    points = read_table(model_dir / "points.arrow")
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
    w = attention_block(model_dir / head["attn"], tok["sentence_id"])
    weights = w[:, tok["position"]] if p["is_key"] else w[tok["position"]]
    best = prefix + int(np.argmax(weights[prefix:]))
    r, c = divmod(best - prefix, cols)
    heat = pixels(page.locator(".atlas-image-heatmap"))
    size = heat.shape[0] / rows
    shown = heat[int((r + 0.5) * size), int((c + 0.5) * size)].astype(float)
    source = np.asarray(Image.open(model_dir / image["file"]).convert("RGB"), float)
    centre = source[r * patch + patch // 2 - 1:r * patch + patch // 2 + 1, c * patch + patch // 2 - 1:c * patch + patch // 2 + 1]
    expected = 0.15 * centre.reshape(-1, 3) + 0.85 * HEAT
    assert np.abs(expected - shown).max(axis=1).min() <= 4

    page.locator("select[aria-label=colour]").select_option("patch-row")
    page.wait_for_function("location.hash.includes('colour=patch-row')")
    assert count_rgb(pixels(page.locator(".atlas-canvas")), QUERY_RGB) == 0
    assert not tab.errors and not tab.dialogs
