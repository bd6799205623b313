"""Real attention heads for the projection benchmarks: the demo manifest's models (all-MiniLM-L6-v2, SmolLM2-135M,
DINOv2-small; all offline) captured over the demo's own samples, then normalised as a build does.

Captures are kept in a folder (default build/bench-captures) and reused by later runs; a head is named
MODEL:L<layer>H<head>.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEMO = REPO / "data_manifests" / "demo.toml"
#: Three heads per model, early, middle and late (MiniLM's were used to choose the 3D settings; the others were not).
DEFAULT_HEADS = ("minilm:L1H3", "minilm:L3H5", "minilm:L5H2", "smollm2:L5H4", "smollm2:L15H1", "smollm2:L25H7",
                 "dinov2-small:L2H1", "dinov2-small:L6H3", "dinov2-small:L10H5")


@dataclass
class RealHead:
    name: str
    x: np.ndarray  #: [2N, d] float32 joint set [queries; keys], normalised as a build does
    group: np.ndarray  #: [N] sentence (or image) id of each token, ascending


def _capture(model: str, folder: Path):
    """The model's capture over its demo dataset, computed once into `folder/model`."""
    from atlas_build.capture import capture, capture_images, load_capture, load_model
    from atlas_build.datasets import load_sentences
    from atlas_build.datasets.images import load_images
    from atlas_build.manifest import load_manifest

    out = folder / model
    if (out / "DONE").exists():
        return load_capture(out)
    manifest = load_manifest(DEMO)
    spec = next(m for m in manifest.models if m.name == model)
    data = manifest.dataset(spec.dataset)
    build = manifest.build
    print(f"  capturing {model} into {out} (once)", flush=True)
    loaded = load_model(spec, manifest.base_dir, "cpu", cache_dir=folder / "_models")
    if data.kind == "images":
        result = capture_images(loaded, load_images(data, manifest.base_dir), out, image_size=data.image_size,
                                batch_size=build.batch_size, dtype=build.capture_dtype)
    else:
        result = capture(loaded, load_sentences(data, manifest.base_dir), out, token_budget=data.max_tokens,
                         max_length=spec.max_tokens, batch_size=build.batch_size, dtype=build.capture_dtype)
    (out / "DONE").write_text("")
    return result


def real_heads(names: list[str], folder: Path) -> list[RealHead]:
    """The named heads (MODEL:L<l>H<h>), normalised with the default (cosine) settings."""
    from atlas_build.capture import read_layer
    from atlas_build.normalize import HeadSample, normalize

    out = []
    for name in names:
        m = re.fullmatch(r"([\w.-]+):L(\d+)H(\d+)", name)
        if not m:
            raise SystemExit(f"bad head name {name!r}: expected MODEL:L<layer>H<head>")
        model, layer, head = m.group(1), int(m.group(2)), int(m.group(3))
        cap = _capture(model, folder)
        tok, facts = cap.tokens, cap.facts
        lc = read_layer(cap.directory, layer)
        sample = HeadSample(q=lc.q[:, head], k=lc.k[:, facts.kv_head_of_query[head]],
                            sentence_id=tok.sentence_id.astype(np.int64), position=tok.position.astype(np.int64),
                            causal=facts.causal, scaling=facts.scaling)
        q, k, _ = normalize(sample)
        out.append(RealHead(name, np.vstack([q, k]).astype(np.float32), tok.sentence_id.astype(np.int64)))
    return out
