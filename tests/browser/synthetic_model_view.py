"""A synthetic causal GQA text model for the model-view and neuron-view browser tests, written straight from
docs/reference/formats.md (independent of atlas_build's exporter): known float16 query/key vectors, attention that is
exactly softmax(q·kᵀ × SCALING) with the causal mask, per-head and per-input attention files and the featured
inputs' vector files. SCALING is not 1/√d, so a view that assumed the convention would show other numbers."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import synthetic_format as sf

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "site_templates" / "assets"
MODEL = "mvsynth"
LAYERS, HEADS, KV, DIM = 2, 4, 2, 8
KV_OF = [h // (HEADS // KV) for h in range(HEADS)]
SCALING = 0.3
HOSTILE = "<img src=x onerror=alert(1)>"
SENTENCES = [
    ["<s>", "The", " cat", " sat", " down", "."],
    ["<s>", "A", " dog"],
    ["<s>", HOSTILE, " big", " red", " ball", " rolled", " away"],
]
FEATURED = [2, 0]
TOKEN_ID0, POINT_ID0, INPUT_ID0 = 300, 9000, 10
VERSION = sf.VERSION


@dataclass
class MV:
    """What the tests know: per input id, its token and point ids, vectors and attention."""

    input_ids: list[int] = field(default_factory=list)
    tokens: dict[int, list[sf.TokenRow]] = field(default_factory=dict)
    q: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (input, layer, head) → [n, d] f16
    k: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (input, layer, kv head)
    attention: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (input, layer, head) → [n, n]

    def stored(self, sid: int, layer: int, head: int) -> np.ndarray:
        """The attention files' weights: round(p × 255) / 255."""
        return np.rint(self.attention[(sid, layer, head)] * 255) / 255


def softmax_causal(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    s = q.astype(np.float64) @ k.astype(np.float64).T * SCALING
    s = s + np.triu(np.full(s.shape, -np.inf), 1)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def vector_file(layer: int, role: int, index: int, blocks: list[tuple[int, int, np.ndarray]]) -> bytes:
    """vectors/…bin: header (role 0 query, 1 key; value width 2 = float16), (input, first, n, offset) per input."""
    head = b"QKVF" + struct.pack("<IIIIIII", VERSION, layer, role, index, DIM, 2, len(blocks))
    offset = len(head) + 16 * len(blocks)
    table, payload = b"", b""
    for sid, first, v in blocks:
        table += struct.pack("<IIII", sid, first, v.shape[0], offset)
        payload += v.astype("<f2").tobytes()
        offset += v.size * 2
    return head + table + payload


def write_data(data: Path) -> MV:
    mv = MV()
    rng = np.random.default_rng(7)
    rows: list[sf.TokenRow] = []
    for s, words in enumerate(SENTENCES):
        sid = INPUT_ID0 + 5 * s
        mv.input_ids.append(sid)
        mv.tokens[sid] = []
        for pos, word in enumerate(words):
            r = sf.TokenRow(TOKEN_ID0 + 2 * len(rows), sid, pos, word, word == "<s>", None, None)
            rows.append(r)
            mv.tokens[sid].append(r)
        for layer in range(LAYERS):
            for kv in range(KV):
                mv.k[(sid, layer, kv)] = (rng.normal(size=(len(words), DIM)) * 1.6).astype(np.float16)
            for h in range(HEADS):
                q = (rng.normal(size=(len(words), DIM)) * 1.6).astype(np.float16)
                mv.q[(sid, layer, h)] = q
                mv.attention[(sid, layer, h)] = softmax_causal(q, mv.k[(sid, layer, KV_OF[h])])
    slots = rng.permutation(2 * len(rows))
    for i, r in enumerate(rows):
        r.query_point, r.key_point = POINT_ID0 + 3 * int(slots[i]), POINT_ID0 + 3 * int(slots[len(rows) + i])
    sf.write_tokens(data / "tokens.arrow", rows[::-1])
    points = sorted((pid, r) for r in rows for pid in (r.query_point, r.key_point))
    firsts = {sid: toks[0].token_id for sid, toks in mv.tokens.items()}
    heads = []
    for layer in range(LAYERS):
        for h in range(HEADS):
            xy = np.array([[r.position + (pid == r.key_point) * 9.0, r.sentence * 0.5 + h] for pid, r in points])
            sf.write_coords(data, layer, h, "pca-2d", xy)
            sf.write_norms(data, layer, h, np.linspace(1, 2, len(points)))
            blocks = [(sid, firsts[sid], mv.attention[(sid, layer, h)]) for sid in mv.input_ids]
            sf.write_attention(data, layer, h, blocks, kv_head=KV_OF[h])
            sf.write_json(data / sf.path("aggregate", layer, h), {"schema_version": VERSION, "layer": layer, "head": h,
                          "kind": "relative-position", "offsets": [-1, 0], "mean": [0.5, 0.5], "count": [1, 1]})
            summary = {"layer": layer, "head": h, "kv_head": KV_OF[h], "label": f"synthetic-{h}", "metrics": {"x": 1.0}}
            sf.write_json(data / sf.path("head", layer, h), {**summary, "schema_version": VERSION, "tiles": {}})
            heads.append(summary)
    featured = [mv.input_ids[i] for i in FEATURED]
    (data / "vectors").mkdir(parents=True, exist_ok=True)
    for layer in range(LAYERS):
        for h in range(HEADS):
            body = vector_file(layer, 0, h, [(sid, firsts[sid], mv.q[(sid, layer, h)]) for sid in featured])
            (data / "vectors" / f"L{layer}Q{h}.bin").write_bytes(body)
        for kv in range(KV):
            body = vector_file(layer, 1, kv, [(sid, firsts[sid], mv.k[(sid, layer, kv)]) for sid in featured])
            (data / "vectors" / f"L{layer}K{kv}.bin").write_bytes(body)
    model = {"name": MODEL, "title": "Synthetic GQA", "source": "synthetic", "revision": "0", "architecture": "llama",
             "num_layers": LAYERS, "num_heads": HEADS, "num_kv_heads": KV, "head_dim": DIM, "causal": True,
             "kv_head_of_query": KV_OF, "scaling": SCALING, "layer_scaling": [], "capture_mode": "interface",
             "has_position_bias": False, "input_kind": "text", "license": "CC0"}
    dataset = {"name": "mv", "source": "inline", "seed": 0, "num_sentences": len(SENTENCES), "num_tokens": len(rows),
               "license": "CC0", "attribution": "tests"}
    inputs = {"count": len(SENTENCES), "featured": featured, "vectors": featured,
              "files": {"attention": sf.INPUT_ATTENTION, "query": "vectors/L{layer}Q{head}.bin",
                        "key": "vectors/L{layer}K{kv_head}.bin"}}
    doc = sf.manifest(model, dataset, ["pca-2d"], len(rows), 2 * len(rows), [], inputs=inputs)
    doc["heads"] = heads
    sf.write_json(data / "manifest.json", doc)
    return mv


MKDOCS_YML = """\
site_name: Model view synthetic
docs_dir: docs
theme:
  name: material
  font: false
plugins: []
extra_css: [assets/atlas/atlas.css, assets/atlas/inputs.css]
extra_javascript:
  - path: assets/atlas/atlas.js
    type: module
not_in_nav: |
  /models/*/L*/*.md
  /models/*/inputs/*.md
nav:
  - Home: index.md
"""


def build_site(work: Path) -> MV:
    docs = work / "docs"
    base = docs / "models" / MODEL
    data_attr = f'data-data="../../../../data/{MODEL}/"'
    for layer in range(LAYERS):
        for h in range(HEADS):
            page = base / f"L{layer}" / f"H{h}.md"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f'# L{layer} H{h}\n\n<div class="atlas-view" data-view="head" {data_attr} '
                            f'data-layer="{layer}" data-head="{h}"></div>\n', "utf-8")
    for s in range(len(SENTENCES)):
        sid = INPUT_ID0 + 5 * s
        page = base / "inputs" / f"{sid}.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f'# Sentence {sid}\n\n<div class="atlas-view" data-view="model" {data_attr} '
                        f'data-input="{sid}"></div>\n', "utf-8")
    (docs / "index.md").write_text("# Model view synthetic\n", "utf-8")
    (work / "mkdocs.yml").write_text(MKDOCS_YML, "utf-8")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(work / "mkdocs.yml"), "-d", str(site)],
                   check=True, cwd=work, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    shutil.copytree(ASSETS, site / "assets", dirs_exist_ok=True)
    return write_data(site / "data" / MODEL)


def point_of(mv: MV, sid: int, position: int, is_key: bool = False) -> int:
    r = mv.tokens[sid][position]
    return r.key_point if is_key else r.query_point


def manifest_json(site: Path) -> dict:
    return json.loads((site / "data" / MODEL / "manifest.json").read_text("utf-8"))
