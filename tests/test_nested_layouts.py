"""A layout that is the first axes of another (PCA in 2D and 3D) is stored once: the build writes no file of its
own, manifest.json names its host, and every reader gets exactly its coordinates from the host's file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from atlas_build.errors import SchemaVersionError
from atlas_build.export import head_path, read_coords, read_layout, read_manifest, write_coords
from atlas_build.project import align_sequence, nested_layouts
from atlas_build.project.layouts import stored_layouts


def test_nested_layouts_are_found_in_the_data_of_every_head() -> None:
    rng = np.random.default_rng(0)
    heads = []
    for _ in range(3):
        basis = rng.normal(size=(50, 3))
        heads.append({"pca-2d": basis[:, :2].copy(), "pca-3d": basis, "tsne-2d": rng.normal(size=(50, 2)),
                      "tsne-3d": rng.normal(size=(50, 3))})
    assert nested_layouts(heads) == {"pca-2d": "pca-3d"}
    heads[2]["pca-2d"] = heads[2]["pca-2d"] + 1e-9  # one head differs: each layout keeps its own file
    assert nested_layouts(heads) == {}
    assert nested_layouts([]) == {}
    same = rng.normal(size=(20, 3))  # a layout equal to the first axes of two others: the one with the most axes
    assert nested_layouts([{"a": same[:, :1], "b": same[:, :2], "c": same}]) == {"a": "c", "b": "c"}


def test_alignment_keeps_a_nested_layout_the_first_axes_of_its_host() -> None:
    """Heads are turned onto their predecessor layout by layout; a host turns in blocks, so the 2D picture is
    the one a 2D alignment gives and the host still holds it exactly."""
    from atlas_build.project import align

    rng = np.random.default_rng(2)
    heads = [{"pca-2d": b[:, :2].copy(), "pca-3d": b} for b in (rng.normal(size=(60, 3)) * [5, 2, 1] for _ in range(3))]
    out = align_sequence(heads)
    for before, after, prev in zip(heads[1:], out[1:], out[:-1]):
        assert np.array_equal(after["pca-2d"], after["pca-3d"][:, :2])
        assert np.allclose(after["pca-2d"], align(before["pca-2d"], prev["pca-2d"]), atol=1e-5)
        dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=2)  # noqa: E731
        assert np.allclose(dist(after["pca-3d"]), dist(before["pca-3d"]), atol=1e-4), "only turned and moved"
    assert nested_layouts(out) == {"pca-2d": "pca-3d"}


def test_stored_layouts_leave_out_the_nested_ones_only_with_their_host() -> None:
    assert stored_layouts(("pca-2d", "tsne-2d", "pca-3d", "tsne-3d")) == ("tsne-2d", "pca-3d", "tsne-3d")
    assert stored_layouts(("pca-2d", "tsne-3d")) == ("pca-2d", "tsne-3d")
    assert stored_layouts(("pca-3d", "faithful-2d")) == ("pca-3d", "faithful-2d")


def test_a_nested_layout_reads_from_its_hosts_file_and_nothing_else(tmp_path: Path) -> None:
    xyz = np.random.default_rng(1).normal(size=(40, 3)) * [1.0, 30.0, 0.1]
    write_coords(tmp_path / head_path("coords", 2, 5, "pca-3d"), xyz, 2, 5, "pca-3d", 12)
    manifest = {"files": {"coords": "coords/L{layer}H{head}_{layout}.bin.gz"},
                "nested_layouts": {"pca-2d": {"layout": "pca-3d", "dims": 2}}}
    xy = read_layout(tmp_path, 2, 5, "pca-2d", manifest)
    assert np.array_equal(xy, read_layout(tmp_path, 2, 5, "pca-3d", manifest)[:, :2])
    write_coords(tmp_path / "own.bin.gz", xyz[:, :2], 2, 5, "pca-2d", 12)  # what a file of its own would decode to
    assert np.array_equal(xy, read_coords(tmp_path / "own.bin.gz"))
    write_coords(tmp_path / head_path("coords", 2, 6, "pca-3d"), xyz, 2, 5, "pca-3d", 12)  # another head's file
    with pytest.raises(SchemaVersionError, match="holds layer 2 head 5 pca-3d"):
        read_layout(tmp_path, 2, 6, "pca-2d", manifest)


def test_build_stores_pca_2d_in_pca_3d_files(pca_build: Path) -> None:
    data = pca_build / "site" / "data" / "tiny-bert"
    manifest = read_manifest(data / "manifest.json")
    assert manifest["layouts"] == ["pca-2d", "pca-3d"]
    assert manifest["nested_layouts"] == {"pca-2d": {"layout": "pca-3d", "dims": 2}}
    assert sorted(p.name for p in (data / "coords").iterdir()) == sorted(
        Path(head_path("coords", h["layer"], h["head"], "pca-3d")).name for h in manifest["heads"])
    assert stored_layouts(tuple(manifest["layouts"])) == ("pca-3d",), "what atlas validate estimates"
    for h in manifest["heads"]:
        layer, head = h["layer"], h["head"]
        xy = read_layout(data, layer, head, "pca-2d", manifest)
        exact = np.load(next(pca_build.glob(f"cache/tiny-bert/heads-*/L{layer}H{head}/layout_pca-2d.npy")))
        # the head's own PCA picture, turned onto its predecessor's (distances kept) and quantized to 16 bits
        dist = lambda x: np.linalg.norm(x[:, None] - x[None], axis=2)  # noqa: E731
        assert xy.shape == exact.shape
        assert np.abs(dist(xy) - dist(exact)).max() <= 2 * np.ptp(xy, axis=0).max() / 65535 + 1e-5
        # the head page preloads the file its default layout is read from
        page = (pca_build / "site" / "models" / "tiny-bert" / f"L{layer}" / f"H{head}" / "index.html").read_text()
        preloads = re.findall(r'href="([^"]*coords/[^"]*)"', page)
        assert preloads and all(p.endswith(f"L{layer}H{head}_pca-3d.bin.gz") for p in preloads)
    assert (data / head_path("thumb", 0, 0, "pca-2d")).is_file(), "the 2D picture is still drawn from pca-2d"
