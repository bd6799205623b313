"""A small synthetic atlas site for the browser tests, written straight from docs/reference/formats.md.

Independent of atlas_build on purpose: it checks the JavaScript views against the written contract, not against
whatever the exporter happens to do. Ids are deliberately not row numbers, tokens.arrow lists its rows in another
order than their point ids, and one token has no points (as with `max_token_repeats`), so any reader that joins
by row order instead of by id draws the wrong picture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import synthetic_format as sf
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
    ["<|endoftext|>", "An", " empire", " café", "", " 😀"],
]
#: Raw byte-level BPE pieces of the last sentence (the others' pieces are their texts); "ĠðŁĺ" + "Ģ" split 😀.
BYTE_LEVEL = 3
PIECES = {(BYTE_LEVEL, 2): "Ġempire", (BYTE_LEVEL, 3): "ĠcafÃ©", (BYTE_LEVEL, 4): "ĠðŁĺ", (BYTE_LEVEL, 5): "Ģ"}
NO_POINTS = (2, 5)  # (sentence, position) of the token without query/key points
LAYOUTS = ["pca-2d", "tsne-2d", "pca-3d"]
TOKEN_ID0, POINT_ID0 = 100, 5000
#: related heads of each head's file: (layer, head, similarity); (9, 9) names no head and must be skipped
PLAIN_ATTENTION = (1, 0)  # this head's attention file is not compressed (a server decoded it on the way)
RELATED = {(0, 0): [(1, 1, 0.93), (9, 9, 0.9), (0, 1, 0.5)], (1, 1): []}


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
    """What the tests need to know about the data they are looking at (points in ascending id order)."""

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


def norm_of(p: Point) -> float:
    return 1.0 + p.position + 3 * p.is_key


def _tokens(synth: Synth) -> list[sf.TokenRow]:
    """Token rows with their point ids; points get ids in a shuffled order (POINT_ID0 + 7 k)."""
    rows = []
    for s, words in enumerate(SENTENCES):
        for pos, word in enumerate(words):
            rows.append(sf.TokenRow(TOKEN_ID0 + len(rows) * 3, s, pos, word, word.startswith(("[", "<|")), None, None,
                                    piece=PIECES.get((s, pos))))
    with_points = [r for r in rows if (r.sentence, r.position) != NO_POINTS]
    slots = np.random.default_rng(0).permutation(2 * len(with_points))
    for k, r in enumerate(with_points):
        r.query_point = POINT_ID0 + 7 * int(slots[k])
        r.key_point = POINT_ID0 + 7 * int(slots[len(with_points) + k])
        for is_key, pid in ((0, r.query_point), (1, r.key_point)):
            synth.points.append(Point(pid, r.token_id, is_key, r.sentence, r.position, r.text))
    synth.points.sort(key=lambda p: p.point_id)
    return rows


def _head(data_dir: Path, synth: Synth, rows: list[sf.TokenRow], layer: int, head: int, version: int) -> sf.HeadRecord:
    pts = synth.points
    for layout in LAYOUTS:
        sf.write_coords(data_dir, layer, head, layout, np.array([coords(p, layer, head, layout) for p in pts]), version)
    sf.write_norms(data_dir, layer, head, np.array([norm_of(p) for p in pts]), version)
    by_sentence = [[r.token_id for r in rows if r.sentence == s] for s in range(len(SENTENCES))]
    blocks = [attention(len(words), head) for words in SENTENCES]
    sf.write_attention(data_dir, layer, head, [(s, ids[0], w) for s, (ids, w) in enumerate(zip(by_sentence, blocks))],
                       version, compress=(layer, head) != PLAIN_ATTENTION)
    span, mean, count = sf.relative_means(blocks)
    sf.write_json(data_dir / sf.path("aggregate", layer, head),
                  {"schema_version": version, "layer": layer, "head": head, "kind": "relative-position",
                   "offsets": [-span, span], "mean": mean, "count": count})
    for lay in LAYOUTS:
        if lay.endswith("2d"):
            (data_dir / "thumbs").mkdir(exist_ok=True)
            Image.new("RGB", (48, 48), (200, 230 - 40 * layer, 200 + 20 * head)).save(data_dir / sf.path("thumb", layer, head, lay))
    detail = {"norm": {"scale_c": 1.5 + head, "mean_q_norm": 3.0, "mean_k_norm": 6.0, "translation_norm": 0.5},
              "trust": {"pca-2d": {"trustworthiness": 0.9}}, "tiles": {}}
    if (layer, head) in RELATED:
        detail["related"] = [{"layer": l, "head": h, "similarity": sim} for l, h, sim in RELATED[(layer, head)]]
    metrics = {"spearman": round(-0.5 - 0.1 * (2 * layer + head), 3), "attn_distance": 1.0 + head}
    i = HEADS * layer + head
    faithful = {"pca-2d": {"query_rank_corr": round(0.1 * i, 3), "nearest_key_share": 0.5},
                "tsne-2d": {"query_rank_corr": round(0.9 - 0.2 * i, 3)}}  # opposite orders; tsne: share not defined
    return sf.HeadRecord(layer, head, "first-token" if head == 0 else "next-token", metrics, detail, faithful)


def write_data(data_dir: Path, version: int = sf.VERSION) -> Synth:
    """Write data/<model>/ (manifest, tokens, every head's files, thumbnails)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    rows = _tokens(synth)
    sf.write_tokens(data_dir / "tokens.arrow", rows[::-1], version)
    heads = [_head(data_dir, synth, rows, layer, head, version) for layer in range(LAYERS) for head in range(HEADS)]
    for h in heads:
        h.write(data_dir, version)
    model = {"name": MODEL, "title": "Synthetic <b>model</b>", "source": "synthetic", "revision": "0",
             "architecture": "bert", "num_layers": LAYERS, "num_heads": HEADS, "num_kv_heads": HEADS,
             "head_dim": 4, "causal": False, "kv_head_of_query": list(range(HEADS)), "license": "CC0"}
    dataset = {"name": "synth", "source": "inline", "seed": 0, "num_sentences": len(SENTENCES),
               "num_tokens": len(rows), "license": "CC0", "attribution": "tests"}
    sf.write_json(data_dir / "manifest.json", sf.manifest(model, dataset, LAYOUTS, len(rows), len(synth.points), heads,
                                                          version))
    return synth


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
  palette:
    - scheme: default
      toggle:
        icon: material/weather-night
        name: Switch to dark mode
    - scheme: slate
      toggle:
        icon: material/weather-sunny
        name: Switch to light mode
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
    write_data(site / "data" / BAD_MODEL, version=sf.VERSION + 1)
    shutil.copytree(ASSETS, site / "assets", dirs_exist_ok=True)
    return synth
