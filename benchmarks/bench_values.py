"""What the value view costs per head (not a test): CPU of the per-head unit with and without the value work (value
scores + value layouts), and the bytes of a head's files with and without its value files.

Heads are real (benchmarks/real_heads.py: the demo's models over the demo's samples, captured once into the capture
folder). Each head runs `run_head` twice in this process with BLAS on one thread: once as the first query head of its
key/value head (value scores and layouts), once without values; the CPU seconds (process time) of both, their
difference and ratio are printed per head, then medians. Layouts: the manifest default (all seven); the value
layouts are then pca-2d, tsne-2d and umap-2d. Sizes: a head's files as `export_model` writes them (coords of every
layout, norms, attention, aggregate, thumbnails) against its value files: its key/value head's value layouts and ‖v‖
file (which the query heads of a key/value head share) and its own ‖o‖ file.

    python benchmarks/bench_values.py [--heads minilm:L1H3,minilm:L3H5] [--captures build/bench-captures]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_heads import REPO, _capture  # noqa: E402

DEFAULT = ("minilm:L1H3", "minilm:L3H5", "minilm:L5H2", "smollm2:L5H4", "smollm2:L15H1")


def _task(cap, layer: int, head: int, with_values: bool):
    from atlas_build.capture import read_layer
    from atlas_build.manifest import ProjectionSpec
    from atlas_build.pipeline.tasks import layer_tasks
    from atlas_build.project import ProjectionParams

    lc = read_layer(cap.directory, layer)
    has_point = np.ones(len(cap.tokens), bool)
    spec = ProjectionSpec()
    task = layer_tasks(cap, layer, lc, has_point, spec.layouts, ProjectionParams.from_spec(spec, seed=0), None,
                       skip=set(range(cap.facts.num_heads)) - {head})[0]
    task.lays_out_values = with_values
    if not with_values:
        task.values = None
    return task, lc


def _cpu(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def _sizes(cap, lc, res, folder: Path) -> tuple[int, int]:
    from atlas_build.export import SentenceAttention
    from atlas_build.export.head_files import HeadFileOptions, sentence_token_ids, write_head_files
    from atlas_build.export.values import write_layer_values
    from atlas_build.normalize.joint import is_key

    tok = cap.tokens
    ids = sentence_token_ids(tok.token_id, tok.sentence_id, tok.position)
    sentences = [SentenceAttention(s, ids[s], lc.attention(s)[res.head]) for s in sorted(ids)]
    opts = HeadFileOptions(causal=cap.facts.causal, thumbnail_size=160, tile_threshold=200_000)
    write_head_files(folder / "head", res.layer, res.head, res.layouts, res.norms, sentences,
                     is_key(2 * len(tok)), opts)
    from atlas_build.export.values import token_value_norms
    from atlas_build.metrics.values import sentence_rows, values_by_sentence
    from atlas_build.pipeline.export_model import token_output_norms

    attn = {s: lc.attention(s) for s in sorted(ids)}
    values = values_by_sentence(tok.sentence_id, tok.position, lc.v[:, res.kv_head])
    output = token_output_norms(attn, res.head, values, sentence_rows(tok.sentence_id, tok.position), tok.position,
                                cap.facts.causal, None)
    write_layer_values(folder / "values", res.layer, token_value_norms(lc.v), tok.token_id, np.ones(len(tok), bool),
                       {res.kv_head: res.value_layouts}, {res.head: output})
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*") if p.is_file())  # noqa: E731
    return size(folder / "head"), size(folder / "values")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", default=",".join(DEFAULT))
    ap.add_argument("--captures", default=str(REPO / "build" / "bench-captures"))
    args = ap.parse_args()
    from atlas_build.pipeline.heads import run_head
    from atlas_build.project import warm_up

    warm_up()
    rows = []
    for name in args.heads.split(","):
        model, layer, head = re.fullmatch(r"([\w.-]+):L(\d+)H(\d+)", name).groups()
        cap = _capture(model, Path(args.captures))
        with_v, lc = _task(cap, int(layer), int(head), True)
        without, _ = _task(cap, int(layer), int(head), False)
        res, t_with = _cpu(lambda: run_head(with_v))
        _, t_without = _cpu(lambda: run_head(without))
        with tempfile.TemporaryDirectory() as tmp:
            head_bytes, value_bytes = _sizes(cap, lc, res, Path(tmp))
        rows.append((t_with - t_without, t_with / t_without, value_bytes / head_bytes))
        print(f"{name}: {len(cap.tokens)} tokens, dv {lc.v.shape[2]}; CPU {t_without:.2f} s without values, "
              f"{t_with:.2f} s with (+{t_with - t_without:.2f} s, x{t_with / t_without:.2f}); head files "
              f"{head_bytes / 1024:.0f} KiB, value files {value_bytes / 1024:.0f} KiB (+{100 * value_bytes / head_bytes:.0f}%)",
              flush=True)
    extra, ratio, size = (statistics.median(c) for c in zip(*rows))
    print(f"median over {len(rows)} heads: +{extra:.2f} CPU s per head laying out values (x{ratio:.2f}); "
          f"value files +{100 * size:.0f}% of a head's files")


if __name__ == "__main__":
    main()
