"""A synthetic site with one large head (``synth-large``), written from docs/reference/formats.md like the other
synthetic sites, with its tile pyramid rendered by the exporter's own `write_tiles` (a build makes the same files).

Used by tests/browser/test_large_heads.py (a few thousand tokens) and benchmarks/bench_large_head_browser.py
(125k tokens = 250k points). Points: queries and keys in Zipf-sized clusters plus a spiral, seeded; point ids
2·token and 2·token + 1; one sentence every ``SENT_LEN`` tokens; token texts ``w<i mod 997>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import synthetic_format as sf
from atlas_build.export.tiles import write_tiles, zoom_levels

REPO = Path(__file__).resolve().parents[2]
MODEL = "synth-large"
SENT_LEN = 25
LAYOUTS = ["pca-2d", "pca-3d"]
MKDOCS_YML = """\
site_name: Large head
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
nav:
  - Home: index.md
"""


def layout(n_tokens: int, dims: int = 2, seed: int = 0) -> np.ndarray:
    """[2 · n_tokens, dims] coordinates, queries first: clusters of Zipf sizes and a spiral per kind."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in (0, 1):
        n_spiral = n_tokens // 5
        t = np.sqrt(rng.random(n_spiral)) * 6 * np.pi
        spiral = np.stack([t * np.cos(t), t * np.sin(t), t], axis=1) + rng.normal(0, 0.6, (n_spiral, 3))
        sizes = 1.0 / np.arange(1, 121) ** 1.1
        which = rng.choice(len(sizes), size=n_tokens - n_spiral, p=sizes / sizes.sum())
        centres = rng.normal(0, 18, (len(sizes), 3))
        blobs = centres[which] + rng.normal(0, 1.0 + 2.0 * rng.random(len(sizes)))[which, None] * \
            rng.normal(size=(len(which), 3))
        pts = np.vstack([spiral, blobs])[rng.permutation(n_tokens)]
        pts[:, 0] += 45 * kind
        out.append(pts)
    return np.vstack(out)[:, :dims]


def write_model(data_dir: Path, n_tokens: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = [sf.TokenRow(i, i // SENT_LEN, i % SENT_LEN, f"w{i % 997}", False, 2 * i, 2 * i + 1)
            for i in range(n_tokens)]
    sf.write_tokens(data_dir / "tokens.arrow", rows)
    tiles = {}
    for name in LAYOUTS:
        xyz = layout(n_tokens, 3 if name.endswith("3d") else 2)
        in_id_order = np.empty_like(xyz)
        in_id_order[0::2], in_id_order[1::2] = xyz[:n_tokens], xyz[n_tokens:]  # query of token i is point 2i
        sf.write_coords(data_dir, 0, 0, name, in_id_order)
        if name.endswith("2d"):
            rel = sf.path("tiles", 0, 0, name)
            is_key = np.arange(2 * n_tokens) % 2 == 1
            tiles[name] = {"dir": rel, **write_tiles(data_dir / rel, in_id_order, is_key, zoom_levels(2 * n_tokens))}
    norms = 1.0 + np.arange(2 * n_tokens) % 7
    sf.write_norms(data_dir, 0, 0, norms.astype(float))
    w = np.full((SENT_LEN, SENT_LEN), 1.0 / SENT_LEN)
    sf.write_attention(data_dir, 0, 0, [(s, s * SENT_LEN, w) for s in range(n_tokens // SENT_LEN)])
    detail = {"tiles": tiles, "norm": {"scale_c": 1.0, "mean_q_norm": 1.0, "mean_k_norm": 1.0,
                                       "translation_norm": 0.0}}
    head = sf.HeadRecord(0, 0, "large", {"self": 0.1}, detail)
    head.write(data_dir)
    model = {"name": MODEL, "title": MODEL, "source": "synthetic", "revision": "0", "architecture": "synthetic",
             "num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 4, "causal": False,
             "kv_head_of_query": [0], "license": "CC0", "input_kind": "text"}
    dataset = {"name": "words", "source": "inline", "seed": 0, "num_sentences": n_tokens // SENT_LEN,
               "num_tokens": n_tokens, "license": "CC0", "attribution": "tests"}
    sf.write_json(data_dir / "manifest.json", sf.manifest(model, dataset, LAYOUTS, n_tokens, 2 * n_tokens, [head]))


def build_site(work: Path, site_url: str, n_tokens: int) -> Path:
    """mkdocs-material site with the head page models/synth-large/L0/H0/; returns the site directory."""
    docs = work / "docs"
    page = docs / "models" / MODEL / "L0" / "H0.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f'# Large head\n\n<div class="atlas-view" data-view="head" data-data="../../../../data/{MODEL}/" '
                    'data-layer="0" data-head="0"></div>\n', "utf-8")
    (docs / "index.md").write_text(f"# Large head\n\n[the head](models/{MODEL}/L0/H0.md)\n", "utf-8")
    (work / "mkdocs.yml").write_text(MKDOCS_YML.format(site_url=site_url), "utf-8")
    site = work / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(work / "mkdocs.yml"), "-d", str(site)],
                   check=True, cwd=work, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    write_model(site / "data" / MODEL, n_tokens)
    shutil.copytree(REPO / "site_templates" / "assets", site / "assets", dirs_exist_ok=True)
    return site
