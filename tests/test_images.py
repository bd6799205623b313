"""Image datasets: synthetic probes, folders, skimage/sklearn photos, patch <-> (image, row, col), preprocessing."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_build.datasets.images import (GRATING_ANGLES, GRATING_FREQS, PROBE_FAMILIES, dataset_license, hsv_to_rgb,
                                         load_images, make_probe, patch_columns, patch_grid, patch_to_position,
                                         patch_to_token, position_to_patch, probe_catalogue, token_to_patch,
                                         tokens_per_image)
from atlas_build.datasets.pixels import ImageItem, ImagePreprocessor, fit_image, to_rgb_uint8
from atlas_build.errors import InputError, SourceError
from atlas_build.manifest import DatasetSpec

HERE = Path(".")


def spec(**kw: object) -> DatasetSpec:
    base = dict(name="imgs", source="probes", kind="images")
    base.update(kw)
    return DatasetSpec(**base)  # type: ignore[arg-type]


# --- probes ----------------------------------------------------------------------------------------------------


def test_probe_catalogue_names_and_families() -> None:
    cat = probe_catalogue()
    names = [p.name for p in cat]
    assert len(names) == len(set(names))
    assert {p.family for p in cat} == set(PROBE_FAMILIES)
    assert "grating-f8-a45" in names and "hue-a90" in names and "brightness-a270" in names and "circles-f4" in names
    assert sum(p.family == "gratings" for p in cat) == len(GRATING_FREQS) * len(GRATING_ANGLES)


def test_probes_deterministic_same_seed_same_bytes() -> None:
    a = load_images(spec(seed=7), HERE)
    b = load_images(spec(seed=7), HERE)
    assert [i.name for i in a] == [i.name for i in b]
    assert [i.image_id for i in a] == list(range(len(a)))
    for x, y in zip(a, b):
        assert x.pixels.dtype == np.uint8 and x.pixels.shape == (224, 224, 3)
        assert x.pixels.tobytes() == y.pixels.tobytes()
        assert x.license and x.attribution


def test_probe_seed_changes_phases_not_brightness() -> None:
    a = {i.name: i.pixels for i in load_images(spec(seed=1), HERE)}
    b = {i.name: i.pixels for i in load_images(spec(seed=2), HERE)}
    for name in a:
        same = np.array_equal(a[name], b[name])
        # by design: hue start and grating/ring phase follow the seed; brightness ramps do not
        assert same == name.startswith("brightness-"), name


def test_probe_independent_of_selection() -> None:
    all_ = {i.name: i.pixels for i in load_images(spec(seed=3), HERE)}
    one = load_images(spec(seed=3, images=("grating-f8-a45",)), HERE)
    assert len(one) == 1 and one[0].image_id == 0
    assert np.array_equal(one[0].pixels, all_["grating-f8-a45"])


def test_probe_params_differ_as_designed() -> None:
    by = {p.name: p for p in probe_catalogue()}
    g = {n: make_probe(by[n], 224, 0)[..., 0].astype(float) / 255 for n in by if n.startswith("grating-")}
    # every grating is distinct and grey
    keys = list(g)
    for i, k in enumerate(keys):
        for k2 in keys[i + 1:]:
            assert not np.allclose(g[k], g[k2]), (k, k2)
    # frequency: count zero crossings along the grating's direction (angle 0 → along a row)
    for f in GRATING_FREQS:
        row = g[f"grating-f{f}-a0"][100] - 0.5
        crossings = np.count_nonzero(np.diff(np.sign(row)) != 0)
        assert abs(crossings - 2 * f) <= 1, (f, crossings)
        assert np.allclose(g[f"grating-f{f}-a0"], g[f"grating-f{f}-a0"][:1])  # constant down the columns
        assert np.allclose(g[f"grating-f{f}-a90"], g[f"grating-f{f}-a90"][:, :1])  # constant along the rows
    # brightness ramps: dark → light along the angle, grey
    b0 = make_probe(by["brightness-a0"], 64, 0)
    assert (b0[..., 0] == b0[..., 1]).all() and (b0[..., 1] == b0[..., 2]).all()
    assert b0[0, 0, 0] < 10 and b0[0, -1, 0] > 245 and (np.diff(b0[5, :, 0].astype(int)) >= 0).all()
    b90 = make_probe(by["brightness-a90"], 64, 0)  # angle 90 points up: bottom dark, top light
    assert b90[-1, 5, 0] < 10 and b90[0, 5, 0] > 245
    # hue gradients: fully saturated, hue changes along the angle only
    h0 = make_probe(by["hue-a0"], 64, 0).astype(int)
    assert (h0.max(axis=-1) >= 254).all() and (h0.min(axis=-1) <= 1).all()
    assert (h0 == h0[:1]).all() and len({tuple(c) for c in h0[0]}) > 20
    # circles: rings about the image centre (mirror symmetric), more rings at higher frequency
    c = make_probe(by["circles-f4"], 128, 0).astype(int)
    assert np.array_equal(c, c[:, ::-1]) and np.array_equal(c, c[::-1]) and np.array_equal(c[..., 0], c[..., 0].T)
    mid = c[64, 64:, 0] - 127.5
    c16 = make_probe(by["circles-f16"], 128, 0)[64, 64:, 0] - 127.5
    assert np.count_nonzero(np.diff(np.sign(c16)) != 0) > 3 * np.count_nonzero(np.diff(np.sign(mid)) != 0)


def test_probe_size_follows_image_size() -> None:
    items = load_images(spec(image_size=98, images=("hue", "circles")), HERE)
    assert all(i.pixels.shape == (98, 98, 3) for i in items)
    assert [i.name for i in items][:8] == [f"hue-a{a}" for a in (0, 45, 90, 135, 180, 225, 270, 315)]


def test_probe_families_expand_in_listed_order_and_max_images() -> None:
    items = load_images(spec(images=("circles", "hue-a45", "hue"), max_images=100), HERE)
    names = [i.name for i in items]
    assert names[0].startswith("circles-") and names[len([n for n in names if n.startswith("circles")])] == "hue-a45"
    assert names.count("hue-a45") == 1
    assert len(load_images(spec(images=("gratings",), max_images=3), HERE)) == 3


def test_max_images_seeded_subset_in_catalogue_order() -> None:
    a = [i.name for i in load_images(spec(max_images=5, seed=1), HERE)]
    b = [i.name for i in load_images(spec(max_images=5, seed=1), HERE)]
    c = [i.name for i in load_images(spec(max_images=5, seed=2), HERE)]
    order = [p.name for p in probe_catalogue()]
    assert a == b and len(a) == 5 and a != c
    assert a == sorted(a, key=order.index)


def test_unknown_probe_name() -> None:
    with pytest.raises(InputError, match="unknown image 'grating-f9-a1'"):
        load_images(spec(images=("grating-f9-a1",)), HERE)


def test_hsv_to_rgb_primaries() -> None:
    h = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    rgb = hsv_to_rgb(h, 1.0, 1.0)
    assert np.allclose(rgb, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])


# --- patch grid ------------------------------------------------------------------------------------------------


def test_patch_grid() -> None:
    assert patch_grid(224, 14) == (16, 16)
    assert patch_grid(224, 16) == (14, 14)
    assert patch_grid((224, 112), 16) == (14, 7)
    assert patch_grid(230, 16) == (14, 14)  # partial edge patches are dropped
    with pytest.raises(ValueError):
        patch_grid(8, 16)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 20), cols=st.integers(1, 20), prefix=st.integers(0, 5), image_id=st.integers(0, 500),
       data=st.data())
def test_patch_token_round_trip(rows: int, cols: int, prefix: int, image_id: int, data: st.DataObject) -> None:
    grid = (rows, cols)
    r, c = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1))
    t = patch_to_token(image_id, r, c, grid, prefix)
    assert token_to_patch(t, grid, prefix) == (image_id, r, c)
    pos = patch_to_position(r, c, grid, prefix)
    assert position_to_patch(pos, grid, prefix) == (r, c)
    assert t == image_id * tokens_per_image(grid, prefix) + pos
    k = data.draw(st.integers(0, tokens_per_image(grid, prefix) - 1))
    i2, r2, c2 = token_to_patch(image_id * tokens_per_image(grid, prefix) + k, grid, prefix)
    assert i2 == image_id
    if k < prefix:
        assert (r2, c2) == (-1, -1)
    else:
        assert patch_to_token(i2, r2, c2, grid, prefix) == image_id * tokens_per_image(grid, prefix) + k


def test_patch_columns_match_scalar_helpers() -> None:
    grid, prefix = (3, 4), 2
    cols = patch_columns(3, grid, prefix)
    T = tokens_per_image(grid, prefix)
    assert len(cols["image_id"]) == 3 * T
    for t in range(3 * T):
        img, r, c = token_to_patch(t, grid, prefix)
        assert (cols["image_id"][t], cols["patch_row"][t], cols["patch_col"][t]) == (img, r, c)
        assert cols["prefix"][t] == (r == -1)
        assert cols["position"][t] == t % T


def test_patch_helpers_reject_out_of_range() -> None:
    with pytest.raises(IndexError):
        patch_to_position(3, 0, (3, 4), 1)
    with pytest.raises(IndexError):
        position_to_patch(13, (3, 4), 1)
    with pytest.raises(IndexError):
        token_to_patch(-1, (3, 4), 1)


# --- folders ---------------------------------------------------------------------------------------------------


def _write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30), mode: str = "RGB") -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else color + (128,)).save(path)


def test_folder_source_skips_non_images_with_warning(tmp_path: Path) -> None:
    d = tmp_path / "pics"
    _write_png(d / "b.png", (255, 0, 0))
    _write_png(d / "a.jpg", (0, 255, 0))
    _write_png(d / "sub" / "c.png", (0, 0, 255), mode="RGBA")
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="notes.txt"):
        items = load_images(spec(source="pics", license="CC BY 4.0", attribution="me"), tmp_path)
    assert [i.name for i in items] == ["a.jpg", "b.png", "sub/c.png"]
    assert [i.image_id for i in items] == [0, 1, 2]
    assert items[1].pixels.shape == (30, 40, 3) and tuple(items[1].pixels[0, 0]) == (255, 0, 0)
    assert tuple(items[2].pixels[0, 0]) == (127, 127, 255)  # alpha 128 over white
    assert items[0].license == "CC BY 4.0" and items[0].attribution == "me"
    assert not items[0].pixels.flags.writeable


def test_folder_select_by_stem_or_path(tmp_path: Path) -> None:
    d = tmp_path / "pics"
    _write_png(d / "b.png", (255, 0, 0))
    _write_png(d / "sub" / "c.png", (0, 0, 255))
    items = load_images(spec(source="./pics", images=("sub/c.png", "b")), tmp_path)
    assert [i.name for i in items] == ["sub/c.png", "b.png"]
    with pytest.raises(InputError, match="unknown image 'zzz'"):
        load_images(spec(source="./pics", images=("zzz",)), tmp_path)


def test_folder_all_unreadable_is_input_error(tmp_path: Path) -> None:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "x.png").write_bytes(b"\x89PNG but not really")
    (d / "y.txt").write_text("hello")
    with pytest.raises(InputError, match="no readable image.*x.png"):
        load_images(spec(source="junk"), tmp_path)


def test_folder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        load_images(spec(source="nope"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no files"):
        load_images(spec(source="empty"), tmp_path)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(SourceError, match="not a folder"):
        load_images(spec(source="file.png"), tmp_path)


# --- bundled photos --------------------------------------------------------------------------------------------


def test_skimage_photos() -> None:
    pytest.importorskip("skimage")
    items = load_images(spec(source="skimage", images=("astronaut", "cat", "camera", "horse")), HERE)
    assert [i.name for i in items] == ["astronaut", "chelsea", "camera", "horse"]
    for i in items:
        assert i.pixels.dtype == np.uint8 and i.pixels.ndim == 3 and i.pixels.shape[2] == 3
        assert i.license in ("Public domain", "CC0") and "scikit-image" in i.attribution
    assert items[0].pixels.shape == (512, 512, 3) and items[0].license == "Public domain"
    assert set(np.unique(items[3].pixels)) <= {0, 255}  # the horse silhouette is binary
    with pytest.raises(InputError, match="unknown image"):
        load_images(spec(source="skimage", images=("lena",)), HERE)


def test_sklearn_photos() -> None:
    items = load_images(spec(source="sklearn"), HERE)
    assert [i.name for i in items] == ["china", "flower"]
    assert all(i.pixels.shape == (427, 640, 3) and i.license == "CC BY 2.0" for i in items)
    lic, att = dataset_license(items)
    assert lic == "CC BY 2.0" and "danielbuechele" in att and "vultilion" in att


# --- preprocessing ---------------------------------------------------------------------------------------------


def test_fit_image_modes() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255  # left half white
    crop = fit_image(img, 50, "crop")
    assert crop.shape == (50, 50, 3) and crop[:, :20].mean() > 200 and crop[:, 30:].mean() < 50
    pad = fit_image(img, 50, "pad")
    assert pad.shape == (50, 50, 3) and pad[:10].max() == 0 and pad[-10:].max() == 0  # letterbox bands
    assert fit_image(img, 50, "stretch").shape == (50, 50, 3)
    same = np.full((50, 50, 3), 7, np.uint8)
    assert np.array_equal(fit_image(same, 50), same)
    with pytest.raises(ValueError):
        fit_image(img, 50, "zoom")


def test_preprocessor_pixel_values() -> None:
    items = load_images(spec(images=("brightness-a0",), image_size=28), HERE)
    proc = ImagePreprocessor(size=28, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
    out = proc(items)["pixel_values"]
    assert tuple(out.shape) == (1, 3, 28, 28)
    x = out.numpy()
    assert -1.0 <= x.min() < -0.9 and 0.9 < x.max() <= 1.0
    expected = (items[0].pixels.astype(np.float32) / 255 - 0.5) / 0.5
    assert np.allclose(x[0].transpose(1, 2, 0), expected, atol=1e-6)
    assert proc([items[0].pixels], return_tensors="np")["pixel_values"].shape == (1, 3, 28, 28)


def test_preprocessor_from_hf_processor() -> None:
    class Fake:
        image_mean = [0.1, 0.2, 0.3]
        image_std = [0.4, 0.5, 0.6]
        crop_size = {"height": 98, "width": 98}

    p = ImagePreprocessor.from_processor(Fake(), patch_size=14)
    assert p.size == 98 and p.image_mean == (0.1, 0.2, 0.3) and p.image_std == (0.4, 0.5, 0.6)
    assert ImagePreprocessor.from_processor(Fake(), size=224).size == 224


def test_to_rgb_uint8_conversions() -> None:
    assert to_rgb_uint8(np.ones((2, 2))).tolist() == [[[255] * 3] * 2] * 2  # float in [0, 1]
    assert to_rgb_uint8(np.full((1, 1), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    assert to_rgb_uint8(np.array([[True, False]]))[0].tolist() == [[255] * 3, [0] * 3]


def test_image_item_is_frozen() -> None:
    item = ImageItem(0, "x", np.zeros((2, 3, 3), np.uint8), "CC0", "me")
    assert item.size == (2, 3)
    with pytest.raises(Exception):
        item.name = "y"  # type: ignore[misc]
    assert replace(item, name="y").name == "y"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repr(item)
