"""Faithfulness of every layout over real heads (issue #15's targets; docs/reference/faithfulness.md).

For each head of each captured model: the per-query measures (`query_rank_corr`, `nearest_key_share`) of every
layout and of the high-dimensional spaces, trustworthiness@10 against the space each layout is computed from (and,
for faithful-2d, computed from the padded space, against the normalised joint set too), and the CPU seconds of each layout (same process, same run: the ratios are what to read). Heads are visited in a seeded
shuffled order and each result is appended to a JSON-lines file, so an interrupted run resumes and a partial run is
a random sample of the heads; the summary says how many heads it covers.

    python benchmarks/bench_faithfulness.py --cache build/demo/cache            # every head of every model
    python benchmarks/bench_faithfulness.py --cache build/demo/cache --heads-per-model 12
    python benchmarks/bench_faithfulness.py --cache build/demo/cache --models minilm --out a.jsonl  # one model
    python benchmarks/bench_faithfulness.py --cache build/demo/cache --summary-only --out a.jsonl --also b.jsonl
    python benchmarks/bench_faithfulness.py --cache build/demo/cache --shard 0/2 --out a.jsonl &   # one per core
    python benchmarks/bench_faithfulness.py --cache build/demo/cache --shard 1/2 --out b.jsonl

`--cache` is a build's cache folder (`atlas build data_manifests/demo.toml` makes `build/demo/cache`): its
`<model>/capture-*` folders are read, nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYOUTS = ("pca-2d", "tsne-2d", "umap-2d", "faithful-2d")
#: With --variants: the faithful layout again with other parameters (name → `ProjectionParams` fields).
VARIANTS = {"faithful-2d fixed weight": {"faithful_trust": 0.0, "faithful_order": 0.0},
            "faithful-2d without order term": {"faithful_order": 0.0}}
MEASURES = ("query_rank_corr", "nearest_key_share", "trustworthiness")


def captures(cache: Path) -> dict[str, Path]:
    """Model name → its (newest) finished capture folder in a build cache."""
    out = {}
    for model in sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("_")):
        found = sorted((c for c in model.glob("capture-*") if c.is_dir()), key=lambda c: c.stat().st_mtime)
        if found:
            out[model.name] = found[-1]
    return out


def head_task(folder: Path, layer: int, head: int):
    """The head's sample and attention, as a build reads them."""
    from atlas_build.capture import load_capture, read_layer
    from atlas_build.normalize import HeadSample

    cap = load_capture(folder)
    tok, facts = cap.tokens, cap.facts
    lc = read_layer(cap.directory, layer)
    attention = {int(s): lc.attention(int(s))[head] for s in np.unique(tok.sentence_id)}
    sample = HeadSample(q=lc.q[:, head], k=lc.k[:, facts.kv_head_of_query[head]],
                        sentence_id=tok.sentence_id.astype(np.int64), position=tok.position.astype(np.int64),
                        causal=facts.causal, scaling=facts.scaling)
    return sample, attention


def measure_head(folder: Path, layer: int, head: int, layouts: tuple[str, ...] = LAYOUTS,
                 variants: tuple[str, ...] = ()) -> dict:
    """Every layout's measures and CPU seconds for one head (and the `VARIANTS`), and the high-dimensional
    ceilings."""
    from dataclasses import replace

    from atlas_build.metrics.faithfulness import QueryRows, highdim_faithfulness
    from atlas_build.normalize import normalize
    from atlas_build.normalize.joint import JointSet
    from atlas_build.normalize.padded import padded_space
    from atlas_build.normalize.pairs import attention_pairs
    from atlas_build.pipeline.heads import layout_trust
    from atlas_build.project import ProjectionParams, project

    params = ProjectionParams()
    sample, attention = head_task(folder, layer, head)
    qn, kn, _ = normalize(sample, metric=params.metric)
    joint = JointSet.of(qn, kn)
    x = joint.x.astype(np.float32)
    padded = JointSet(padded_space(joint.queries, joint.keys).astype(np.float32), joint.token_rows, joint.key_rows)
    rows = QueryRows.of(sample, joint, attention)
    out: dict = {"layer": layer, "head": head, "points": len(x), "layouts": {}}
    runs = [(name, name, params) for name in layouts]
    runs += [(label, "faithful-2d", replace(params, **VARIANTS[label])) for label in variants]
    for name, layout, p in runs:
        t0 = time.process_time()
        pairs = attention_pairs(sample, joint, attention, max_keys=p.faithful_keys) \
            if layout.startswith("faithful") else None
        coords = project(x, (layout,), p, pairs=pairs, spaces={"padded": padded.x})[layout]
        seconds = time.process_time() - t0
        measures = layout_trust(sample, joint, padded, params.metric, rows, {layout: coords})[layout]
        out["layouts"][name] = {**{k: v for k, v in measures.items() if k != "spearman_layout_dot"}, "cpu_s": seconds}
    out["highdim"] = highdim_faithfulness(rows, joint, metric=params.metric)
    return out


def all_heads(caps: dict[str, Path], per_model: int | None, seed: int) -> list[tuple[str, int, int]]:
    from atlas_build.capture import load_capture

    order = []
    for model, folder in caps.items():
        facts = load_capture(folder).facts
        heads = [(model, layer, h) for layer in range(facts.num_layers) for h in range(facts.num_heads)]
        rng = np.random.default_rng(seed)
        picked = [heads[i] for i in rng.permutation(len(heads))]
        order.append(picked[:per_model] if per_model else picked)
    # interleave the models so a partial run covers each of them
    return [h for group in zip(*order) for h in group] + [h for g in order for h in g[min(map(len, order)):]]


def summary(results: list[dict]) -> str:
    lines = ["| model | heads | space | query_rank_corr | nearest_key_share | trust@10 | trust@10 vs normalised | "
             "median CPU-s | cost ÷ tsne-2d |", "|---|---|---|---|---|---|---|---|---|"]
    for model in sorted({r["model"] for r in results}):
        rs = [r for r in results if r["model"] == model]

        def mean(vals: list) -> str:
            vals = [v for v in vals if v is not None]
            return f"{np.mean(vals):.2f}" if vals else "n/d"

        present = [*LAYOUTS, *VARIANTS, *sorted({n for r in rs for n in r["layouts"]} - {*LAYOUTS, *VARIANTS})]
        for name in [v for v in present if all(v in r["layouts"] for r in rs)]:
            ls = [r["layouts"][name] for r in rs]
            cost = np.median([v["cpu_s"] for v in ls])
            ratio = (f"{np.median([v['cpu_s'] / r['layouts']['tsne-2d']['cpu_s'] for v, r in zip(ls, rs)]):.2f}"
                     if all("tsne-2d" in r["layouts"] for r in rs) else "–")
            lines.append(f"| {model} | {len(rs)} | {name} | {mean([v.get('query_rank_corr') for v in ls])} | "
                         f"{mean([v.get('nearest_key_share') for v in ls])} | "
                         f"{np.mean([v['trustworthiness'] for v in ls]):.3f} | "
                         f"{np.mean([v.get('trustworthiness_normalised', v['trustworthiness']) for v in ls]):.3f} | "
                         f"{cost:.1f} | {ratio} |")
        for space in ("normalised", "padded"):
            hs = [r["highdim"].get(space, {}) for r in rs]
            lines.append(f"| {model} | {len(rs)} | high-dim {space} | {mean([h.get('query_rank_corr') for h in hs])}"
                         f" | {mean([h.get('nearest_key_share') for h in hs])} | – | – | – | – |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="build/demo/cache", help="a build's cache folder")
    ap.add_argument("--heads-per-model", type=int, default=None, help="a seeded sample of heads per model")
    ap.add_argument("--models", nargs="*", help="only these models")
    ap.add_argument("--out", default="build/bench-faithfulness.jsonl", help="results, one head per line (resumed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--summary-only", action="store_true", help="print the table of the results so far")
    ap.add_argument("--layouts", nargs="*", default=list(LAYOUTS), help="only these layouts (tsne-2d: the cost ratio)")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=None,
                    help="also these of the faithful layout's VARIANTS (comparisons; all without a name)")
    ap.add_argument("--also", nargs="*", default=[], help="more results files (other runs) for the summary")
    ap.add_argument("--shard", default="0/1", help="i/n: only every n-th head of the order, from the i-th (one "
                    "process per core, each with its own --out; merge with --also)")
    args = ap.parse_args()
    variants = () if args.variants is None else tuple(args.variants or VARIANTS)
    caps = captures(Path(args.cache))
    if args.models:
        caps = {m: f for m, f in caps.items() if m in args.models}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    seen = {(r["model"], r["layer"], r["head"]) for r in done}
    if not args.summary_only:
        i, n = (int(v) for v in args.shard.split("/"))
        todo = [h for h in all_heads(caps, args.heads_per_model, args.seed)[i::n] if h not in seen]
        for i, (model, layer, head) in enumerate(todo, 1):
            t0 = time.perf_counter()
            res = {"model": model, **measure_head(caps[model], layer, head, tuple(args.layouts), variants)}
            with out.open("a") as fh:
                fh.write(json.dumps(res) + "\n")
            done.append(res)
            shown = "faithful-2d" if "faithful-2d" in res["layouts"] else args.layouts[-1]
            f = res["layouts"][shown]
            print(f"[{i}/{len(todo)}] {model} L{layer}H{head}: {shown} qrc {f.get('query_rank_corr', 'n/d')}"
                  f" trust {f['trustworthiness']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    done += [json.loads(line) for f in args.also for line in Path(f).read_text().splitlines()]
    print(summary([r for r in done if r["model"] in caps]))


if __name__ == "__main__":
    main()
