"""In chromium, on a real build with PCA in 2D and 3D: pca-2d is drawn from the first two axes of pca-3d's file
(manifest.json's nested_layouts), the only coordinates file the head page fetches."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_build.export import read_layout, read_manifest
from helpers import KEY_RGB, QUERY_RGB, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser

LOAD = """async ([base, layer, head, layouts]) => {
  const { loadModel, loadLayout } = await import(new URL('/assets/atlas/data.js', location.href).href);
  const model = await loadModel(base);
  const out = {};
  for (const name of layouts) {
    const c = await loadLayout(model, layer, head, name);
    out[name] = { dims: c.dims, axes: c.axes.map((a) => Array.from(a)) };
  }
  return out;
}"""


def test_head_page_draws_pca_2d_from_the_pca_3d_file(pca_build, serve, tab):
    url, data = serve(pca_build / "site"), pca_build / "site" / "data" / "tiny-bert"
    manifest = read_manifest(data / "manifest.json")
    layer, head = manifest["heads"][-1]["layer"], manifest["heads"][-1]["head"]
    open_head(tab.page, f"{url}models/tiny-bert/L{layer}/H{head}/#layout=pca-2d")
    coords = sorted({u.rsplit("/", 1)[1] for u in tab.requests if "/coords/" in u})
    assert coords == [f"L{layer}H{head}_pca-3d.bin.gz"]
    img = pixels(tab.page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0 and tab.errors == []
    got = tab.page.evaluate(LOAD, [f"{url}data/tiny-bert/", layer, head, ["pca-2d", "pca-3d"]])
    assert (got["pca-2d"]["dims"], got["pca-3d"]["dims"]) == (2, 3)
    assert got["pca-2d"]["axes"] == got["pca-3d"]["axes"][:2]
    python = read_layout(data, layer, head, "pca-2d", manifest)
    assert np.abs(np.array(got["pca-2d"]["axes"]).T - python).max() <= np.abs(python).max() * 2e-7 + 1e-6
