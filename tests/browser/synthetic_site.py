"""A small synthetic atlas site for the browser tests, written straight from docs/reference/formats.md.

Independent of atlas_build on purpose: it checks the JavaScript views against the written contract, not
against whatever the exporter happens to do. Ids are deliberately not row numbers and head files list their
points in a shuffled order, so any reader that joins by row order instead of by id draws the wrong picture.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

import synthetic_images

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "site_templates" / "assets"
MODEL = "synth"
BAD_MODEL = "future"
LAYERS, HEADS = 2, 2
HOSTILE = "<img src=x onerror=alert(1)>"
SENTENCES = [
    ["[CLS]", "the", "cat", "sat", "[SEP]"],
    ["[CLS]", HOSTILE, "is", "here", "[SEP]"],
    ["[CLS]", "the", "dog", "ran", ".", "[SEP]"],
]
LAYOUTS = ["pca-2d", "tsne-2d", "pca-3d"]
QMAX = 65535
TOKEN_ID0, POINT_ID0 = 100, 5000


@dataclass
class Point:
    point_id: int
    token_id: int
    is_key: int
    sentence: int
    position: int
    text: str


@dataclass
class Synth:
    """What the tests need to know about the data they are looking at."""

    points: list[Point] = field(default_factory=list)
    vit: list = field(default_factory=list)

    def point(self, sentence: int, position: int, is_key: int) -> Point:
        return next(p for p in self.points
                    if (p.sentence, p.position, p.is_key) == (sentence, position, is_key))

    def matching(self, text: str) -> list[Point]:
        return [p for p in self.points if p.text.lower() == text.lower()]


def coords(p: Point, layer: int, head: int, layout: str) -> tuple[float, ...]:
    """Known layout coordinates: queries on a grid on the left, keys on a grid on the right."""
    shift = 0.25 * layer + 0.125 * head
    if layout == "tsne-2d":
        return (p.sentence * 3.0 + p.is_key * 12.0, -p.position * 1.5 + shift)
    x, y = p.position * 1.5 + p.is_key * 12.0 + shift, p.sentence * 3.0
    return (x, y, p.position * 0.5 + p.is_key) if layout.endswith("3d") else (x, y)


def attention(n: int, head: int) -> np.ndarray:
    """Bidirectional rows: head 0 looks mostly at [CLS], head 1 mostly at the next token."""
    rows = np.full((n, n), 0.1 / max(n - 2, 1))
    for i in range(n):
        strong = 0 if head == 0 else min(i + 1, n - 1)
        second = min(i + 1, n - 1) if head == 0 else i
        rows[i, strong] += 0.6
        rows[i, second] += 0.3
    return rows / rows.sum(axis=1, keepdims=True)


def _meta(extra: dict[str, str] | None = None, version: int = 1) -> dict[bytes, bytes]:
    meta = {"atlas.schema_version": str(version), **(extra or {})}
    return {k.encode(): v.encode() for k, v in meta.items()}


def _write_arrow(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _thumb(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (48, 48), colour).save(path)


def write_data(data_dir: Path, version: int = 1) -> Synth:
    """Write data/<model>/ (manifest, tokens, points, per-head files, attention, thumbnails)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "attn").mkdir(exist_ok=True)
    (data_dir / "thumbs").mkdir(exist_ok=True)
    synth = Synth()
    tok_rows: list[tuple[int, int, int, int, str, bool]] = []
    for s, words in enumerate(SENTENCES):
        for pos, word in enumerate(words):
            tok_rows.append((TOKEN_ID0 + len(tok_rows) * 3, s, pos, len(words), word, word.startswith("[")))
    for is_key in (0, 1):
        for tid, s, pos, _, word, _ in tok_rows:
            synth.points.append(Point(POINT_ID0 + 7 * len(synth.points), tid, is_key, s, pos, word))
    tokens = pa.table({
        "token_id": pa.array([r[0] for r in tok_rows], pa.uint32()),
        "sentence_id": pa.array([r[1] for r in tok_rows], pa.uint32()),
        "position": pa.array([r[2] for r in tok_rows], pa.uint16()),
        "sentence_length": pa.array([r[3] for r in tok_rows], pa.uint16()),
        "text": pa.array([r[4] for r in tok_rows], pa.string()).dictionary_encode(),
        "special": pa.array([r[5] for r in tok_rows], pa.bool_()),
    }).replace_schema_metadata(_meta(version=version))
    _write_arrow(data_dir / "tokens.arrow", tokens.take(np.arange(len(tok_rows))[::-1]))
    pts = synth.points
    points = pa.table({
        "point_id": pa.array([p.point_id for p in pts], pa.uint32()),
        "token_id": pa.array([p.token_id for p in pts], pa.uint32()),
        "is_key": pa.array([p.is_key for p in pts], pa.uint8()),
        "sentence_id": pa.array([p.sentence for p in pts], pa.uint32()),
        "position": pa.array([p.position for p in pts], pa.uint16()),
    }).replace_schema_metadata(_meta(version=version))
    _write_arrow(data_dir / "points.arrow", points)
    heads = []
    order = np.random.default_rng(0).permutation(len(pts))
    for layer in range(LAYERS):
        for head in range(HEADS):
            cols: dict[str, pa.Array] = {"point_id": pa.array([pts[i].point_id for i in order], pa.uint32())}
            ranges: dict[str, list[list[float]]] = {}
            for layout in LAYOUTS:
                xyz = np.array([coords(pts[i], layer, head, layout) for i in order])
                ranges[layout] = []
                for dim, axis in enumerate("xyz"[: xyz.shape[1]]):
                    lo, hi = float(xyz[:, dim].min()) - 1.0, float(xyz[:, dim].max()) + 1.0
                    q = np.rint((xyz[:, dim] - lo) / (hi - lo) * QMAX).astype(np.uint16)
                    cols[f"{layout}_{axis}"] = pa.array(q, pa.uint16())
                    ranges[layout].append([lo, hi])
            cols["norm"] = pa.array([1.0 + pts[i].position + 3 * pts[i].is_key for i in order], pa.float32())
            table = pa.table(cols).replace_schema_metadata(_meta({"atlas.ranges": json.dumps(ranges)}, version))
            name = f"L{layer}H{head}"
            _write_arrow(data_dir / f"{name}.arrow", table)
            _write_attn(data_dir / "attn" / f"{name}.bin", head, tok_rows, version)
            thumbs = {lay: f"thumbs/{name}_{lay}.png" for lay in LAYOUTS if lay.endswith("2d")}
            for lay, rel in thumbs.items():
                _thumb(data_dir / rel, (200, 230 - 40 * layer, 200 + 20 * head))
            heads.append({
                "layer": layer, "head": head, "kv_head": head, "file": f"{name}.arrow", "attn": f"attn/{name}.bin",
                "thumbs": thumbs, "ranges": ranges,
                "norm": {"scale_c": 1.5 + head, "mean_q_norm": 3.0, "mean_k_norm": 6.0, "translation_norm": 0.5},
                "metrics": {"spearman": round(-0.5 - 0.1 * (2 * layer + head), 3), "attn_distance": 1.0 + head},
                "label": "first-token" if head == 0 else "next-token",
            })
    manifest = {
        "schema_version": version,
        "model": {"name": MODEL, "title": "Synthetic <b>model</b>", "source": "synthetic", "revision": "0",
                  "architecture": "bert", "num_layers": LAYERS, "num_heads": HEADS, "num_kv_heads": HEADS,
                  "head_dim": 4, "causal": False, "kv_head_of_query": list(range(HEADS)), "license": "CC0"},
        "dataset": {"name": "synth", "source": "inline", "seed": 0, "num_sentences": len(SENTENCES),
                    "num_tokens": len(tok_rows), "license": "CC0", "attribution": "tests"},
        "layouts": LAYOUTS,
        "points": {"file": "points.arrow", "count": len(pts)},
        "tokens": {"file": "tokens.arrow", "count": len(tok_rows)},
        "heads": heads,
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1), "utf-8")
    return synth


def _write_attn(path: Path, head: int, tok_rows: list, version: int) -> None:
    blocks = []
    for s, words in enumerate(SENTENCES):
        first = next(r[0] for r in tok_rows if r[1] == s and r[2] == 0)
        blocks.append((s, first, np.rint(attention(len(words), head) * 255).astype(np.uint8)))
    header = b"ATTN" + struct.pack("<II", version, len(blocks))
    offset = len(header) + 16 * len(blocks)
    table, payload = b"", b""
    for sid, first, block in blocks:
        table += struct.pack("<IIII", sid, first, block.shape[0], offset)
        payload += block.tobytes()
        offset += block.size
    path.write_bytes(header + table + payload)


def _head_md(model: str, layer: int, head: int) -> str:
    prev = (layer, head - 1) if head else (layer - 1, HEADS - 1)
    nxt = (layer, head + 1) if head + 1 < HEADS else (layer + 1, 0)
    nav = ""
    if prev[0] >= 0:
        nav += f'<a class="atlas-prev" rel="prev" href="../../L{prev[0]}/H{prev[1]}/">prev</a> '
    nav += '<a class="atlas-up" href="../../">all heads</a>'
    if nxt[0] < LAYERS:
        nav += f' <a class="atlas-next" rel="next" href="../../L{nxt[0]}/H{nxt[1]}/">next</a>'
    return f"# Layer {layer} · Head {head}\n\n<nav class=\"atlas-headnav\">{nav}</nav>\n\n" + _view_md(model, layer, head)


def _view_md(model: str, layer: int, head: int) -> str:
    return (f'<div class="atlas-view" data-view="head" data-data="../../../../data/{model}/" '
            f'data-layer="{layer}" data-head="{head}"></div>\n')


def _matrix_md(model: str) -> str:
    thumbs = "".join(f'<a class="atlas-thumb" href="L{l}/H{h}/"><img src="../../data/{model}/thumbs/L{l}H{h}_pca-2d.png"'
                     f' alt="L{l} H{h}" loading="lazy"></a>' for l in range(LAYERS) for h in range(HEADS))
    return (f"# {model}\n\n<div class=\"atlas-view\" data-view=\"matrix\" data-data=\"../../data/{model}/\">"
            f"<div class=\"atlas-matrix-static\">{thumbs}</div></div>\n")


MKDOCS_YML = """\
site_name: Synthetic atlas
site_url: {site_url}
docs_dir: docs
theme:
  name: material
  font: false
  features: [navigation.instant]
plugins: []
extra_css: [assets/atlas/atlas.css]
extra_javascript:
  - path: assets/atlas/atlas.js
    type: module
not_in_nav: |
  /models/*/L*/*.md
  /models/synth-*/index.md
nav:
  - Home: index.md
  - Synth: models/synth/index.md
  - Future: models/future/index.md
"""


def build_site(work: Path, site_url: str) -> Synth:
    """mkdocs-material site (navigation.instant) with the views, plus data and assets copied in."""
    docs = work / "docs"
    for model in (MODEL, BAD_MODEL):
        (docs / "models" / model).mkdir(parents=True, exist_ok=True)
        (docs / "models" / model / "index.md").write_text(_matrix_md(model), "utf-8")
    for layer in range(LAYERS):
        for head in range(HEADS):
            page = docs / "models" / MODEL / f"L{layer}" / f"H{head}.md"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(_head_md(MODEL, layer, head), "utf-8")
    for model, heads in synthetic_images.pages().items():
        (docs / "models" / model).mkdir(parents=True, exist_ok=True)
        (docs / "models" / model / "index.md").write_text(_matrix_md(model), "utf-8")
        for layer, head in heads:
            page = docs / "models" / model / f"L{layer}" / f"H{head}.md"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f"# {model} L{layer} H{head}\n\n" + _view_md(model, layer, head), "utf-8")
    bad = docs / "models" / BAD_MODEL / "L0" / "H0.md"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(_head_md(BAD_MODEL, 0, 0), "utf-8")
    (docs / "index.md").write_text(textwrap.dedent("""\
        # Synthetic atlas

        [Synth model](models/synth/index.md) · [first head](models/synth/L0/H0.md)
        """), "utf-8")
    (work / "mkdocs.yml").write_text(MKDOCS_YML.format(site_url=site_url), "utf-8")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(work / "mkdocs.yml"), "-d", str(site)],
                   check=True, cwd=work, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    synth = write_data(site / "data" / MODEL)
    synth.vit = synthetic_images.write_vit(site / "data" / synthetic_images.VIT)
    synthetic_images.write_big(site / "data" / synthetic_images.BIG)
    write_data(site / "data" / BAD_MODEL, version=2)
    shutil.copytree(ASSETS, site / "assets", dirs_exist_ok=True)
    return synth
