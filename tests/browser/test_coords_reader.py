"""The views' coordinates reader (readCoords in assets/atlas/data.js) against files the exporter writes: every
precision the manifest allows, 2D and 3D, plain and gzip, and the files it must refuse."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from atlas_build.export import coords_blob, read_coords

pytestmark = pytest.mark.browser

READ = """async ([url, expect]) => {
  const { gunzip } = await import(new URL('/assets/atlas/fetch.js', location.href).href);
  const { readCoords } = await import(new URL('/assets/atlas/data.js', location.href).href);
  try {
    const buffer = await gunzip(await (await fetch(url)).arrayBuffer(), url);
    const c = readCoords(buffer, url, expect);
    return { dims: c.dims, bits: c.bits, range: c.range, axes: c.axes.map((a) => Array.from(a)) };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}"""


def _write(synthetic, name: str, blob: bytes, compress: bool = True) -> str:
    (synthetic.root / "data" / name).write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
    return f"{synthetic.url}data/{name}"


@pytest.mark.parametrize("bits,dims,compress", [(16, 2, True), (12, 3, True), (8, 2, False), (13, 3, False)])
def test_reader_matches_the_exporters_coordinates(synthetic, tab, bits, dims, compress):
    rng = np.random.default_rng(bits)
    xyz = rng.normal(size=(301, dims)) * np.array([1.0, 40.0, 0.01])[:dims] + 5.0
    blob = coords_blob(xyz, 2, 7, f"tsne-{dims}d", bits)
    url = _write(synthetic, f"c{bits}-{dims}.bin", blob, compress)
    tab.page.goto(synthetic.url)
    got = tab.page.evaluate(READ, [url, {"layer": 2, "head": 7, "layout": f"tsne-{dims}d", "points": 301}])
    assert "error" not in got, got
    assert (got["dims"], got["bits"]) == (dims, bits)
    (synthetic.root / "data" / "same.bin").write_bytes(blob)
    python = read_coords(synthetic.root / "data" / "same.bin")
    shown = np.array(got["axes"]).T
    assert np.abs(shown - python).max() <= np.abs(python).max() * 2e-7 + 1e-6, "float32 of the same numbers"
    step = np.ptp(xyz, axis=0) / (2**bits - 1)
    assert np.all(np.abs(shown - xyz) <= step / 2 + np.abs(xyz) * 2e-7 + 1e-6)


@pytest.mark.parametrize("case,expect", [
    ("other head", "holds layer 2 head 8 tsne-2d"),
    ("other layout", "holds layer 2 head 7 umap-2d"),
    ("other point count", "has 40 rows for the 41 points"),
    ("truncated", "is truncated"),
    ("not coordinates", "is not a coordinates file"),
    ("old version", "data schema version 5"),
])
def test_reader_refuses_a_file_that_is_not_this_heads_layout(synthetic, tab, case, expect):
    xy = np.random.default_rng(0).normal(size=(40, 2))
    blob = {
        "other head": coords_blob(xy, 2, 8, "tsne-2d"),
        "other layout": coords_blob(xy, 2, 7, "umap-2d"),
        "other point count": coords_blob(xy, 2, 7, "tsne-2d"),
        "truncated": coords_blob(xy, 2, 7, "tsne-2d")[:-3],
        "not coordinates": b"ATTI" + bytes(60),
        "old version": b"CRDS" + (5).to_bytes(4, "little") + coords_blob(xy, 2, 7, "tsne-2d")[8:],
    }[case]
    url = _write(synthetic, f"bad-{case.replace(' ', '-')}.bin.gz", blob)
    tab.page.goto(synthetic.url)
    points = 41 if case == "other point count" else 40
    got = tab.page.evaluate(READ, [url, {"layer": 2, "head": 7, "layout": "tsne-2d", "points": points}])
    assert got.get("error", "").startswith("AtlasDataError") and expect in got["error"], got
