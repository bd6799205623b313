"""The matrix page of the real tiny build loads one thumbnail strip per layer (not one file per head) and shows
in every cell its own head's part of the strip."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from atlas_build.export import head_path
from helpers import pixels

pytestmark = pytest.mark.browser


def test_matrix_cells_show_their_own_part_of_the_layer_strip(tiny_site, tab):
    url, root = tiny_site
    data = next((root / "data").glob("*/manifest.json")).parent
    manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    tab.page.goto(f"{url}models/{data.name}/")
    tab.page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    thumbs = [u for u in tab.requests if "/thumbs/" in u]
    assert thumbs and not [u for u in thumbs if re.search(r"/L\d+H\d+_", u)], "no per-head thumbnail file"
    layout = tab.page.locator("select[aria-label=layout]").input_value()
    n_heads = manifest["model"]["num_heads"]
    for h in manifest["heads"]:
        cell = tab.page.locator(f".atlas-matrix-cell[data-layer='{h['layer']}'][data-head='{h['head']}']")
        assert cell.locator("img").get_attribute("src").endswith(f"thumbs/L{h['layer']}_{layout}.png")
        shown = pixels(cell.locator(".atlas-cell-plot")).astype(float)
        side = shown.shape[1]

        def error(head: int) -> float:
            img = Image.open(io.BytesIO((data / head_path("thumb", h["layer"], head, layout)).read_bytes()))
            img = img.convert("RGB")
            want = np.asarray(img.resize((side, shown.shape[0]), Image.Resampling.BILINEAR), float)
            return float(np.abs(shown - want).mean())

        errors = [error(k) for k in range(n_heads)]
        assert errors[h["head"]] < 6, errors  # mean difference per channel of 0-255: resampling only
        others = [e for k, e in enumerate(errors) if k != h["head"]]
        assert errors[h["head"]] < 0.5 * min(others), errors
    assert not tab.errors
