"""Would faithful-2d be cheaper as a continuation of the classic t-SNE 2D solution? (issue #19's build time, issue
#15's ranking; not a test, and not what the build does.)

A build with both tsne-2d and faithful-2d runs two t-SNE optimisations from the PCA start on the same affinities.
This measures the alternative: faithful-2d as `N` iterations of its own objective (attention affinities, rank stress,
trust floor) started from the finished tsne-2d picture, without early exaggeration. Per head: `query_rank_corr`,
`nearest_key_share`, trustworthiness@10 and CPU seconds of faithful-2d as built and of each continuation (the
continuation's seconds exclude the t-SNE it starts from, which the build computes anyway).

    python benchmarks/bench_faithful_continuation.py --cache CACHE --model smollm2 --heads 16 --out s.jsonl
    python benchmarks/bench_faithful_continuation.py --summary-only --out s.jsonl

`--cache` is a build's cache folder, as for bench_faithfulness.py (its heads are drawn with `--seed`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # one thread, as a build's worker: CPU-s compare
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_faithfulness as bf  # noqa: E402

#: label → (iterations, start weight of the stress)
CONTINUATIONS = {"continued 75": (75, 0.03), "continued 125": (125, 0.03), "continued 125, weight 0.1": (125, 0.1)}


def continued(xp, pairs, affinities, start: np.ndarray, params, n_iter: int, weight: float) -> np.ndarray:
    """faithful-2d's objective run for `n_iter` iterations from `start`, kept at its scale, on the t-SNE
    `affinities` (which a build shares with tsne-2d)."""
    import openTSNE.initialization

    from atlas_build.project.faithful import StressWeight, TrustSample, faithful_terms, faithful_tsne

    stress = StressWeight(weight, early_iter=0, n_iter=n_iter, trust=TrustSample(xp, seed=params.seed),
                          floor=params.faithful_trust)
    rescale = openTSNE.initialization.rescale
    openTSNE.initialization.rescale = lambda x, target_std=None: x  # a continuation: keep the t-SNE picture's scale
    try:
        return faithful_tsne(affinities, faithful_terms(xp, pairs, params.metric), start, stress=stress,
                             mix=params.faithful_mix, early_iter=0, n_iter=n_iter,
                             exaggeration=params.tsne_exaggeration, dof=params.tsne_dof)
    finally:
        openTSNE.initialization.rescale = rescale


def measure(folder: Path, layer: int, head: int) -> dict:
    from atlas_build.metrics import trust_scores
    from atlas_build.metrics.faithfulness import QueryRows, layout_faithfulness
    from atlas_build.normalize import normalize
    from atlas_build.normalize.joint import JointSet
    from atlas_build.normalize.padded import padded_space
    from atlas_build.normalize.pairs import attention_pairs
    from atlas_build.project import ProjectionParams, methods, prepare, project
    from atlas_build.project.knn import knn_graph

    params = ProjectionParams()
    sample, attention = bf.head_task(folder, layer, head)
    joint = JointSet.of(*normalize(sample, metric=params.metric)[:2])
    x = joint.x.astype(np.float32)
    rows = QueryRows.of(sample, joint, attention)
    pairs = attention_pairs(sample, joint, attention, max_keys=params.faithful_keys)
    out: dict = {"layer": layer, "head": head, "layouts": {}}

    def record(name: str, coords: np.ndarray, seconds: float) -> None:
        out["layouts"][name] = {**layout_faithfulness(rows, coords), "cpu_s": seconds,
                                "trustworthiness": trust_scores(sample, joint, coords,
                                                                metric=params.metric)["trustworthiness"]}

    t0 = time.process_time()
    padded = padded_space(joint.queries, joint.keys).astype(np.float32)
    both = project(x, ("tsne-2d", "faithful-2d"), params, pairs=pairs, spaces={"padded": padded})
    both_s = time.process_time() - t0
    t0 = time.process_time()
    project(x, ("tsne-2d",), params)
    tsne_s = time.process_time() - t0
    record("tsne-2d", both["tsne-2d"], tsne_s)
    record("faithful-2d", both["faithful-2d"], both_s - tsne_s)  # its share of a build that has both
    xp = prepare(x, params.metric)
    graph = knn_graph(xp, max(int(3 * params.tsne_perplexity), params.umap_n_neighbors), params.metric,
                      seed=params.seed)
    affinities = methods.tsne_affinities(graph, params.tsne_perplexity)  # the build's, computed once for tsne-2d
    for label, (n_iter, weight) in CONTINUATIONS.items():
        t0 = time.process_time()
        coords = continued(xp, pairs, affinities, both["tsne-2d"].astype(np.float64), params, n_iter, weight)
        record(label, coords, time.process_time() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="build/demo/cache")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--heads", type=int, default=16, help="a seeded sample of the model's heads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="build/bench-continuation.jsonl", help="one head per line (resumed)")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if not args.summary_only:
        from atlas_build.executor import default_initializer

        default_initializer()  # one BLAS thread, as a build's worker
        caps = {m: f for m, f in bf.captures(Path(args.cache)).items() if m == args.model}
        seen = {(r["layer"], r["head"]) for r in done}
        for model, layer, head in bf.all_heads(caps, args.heads, args.seed):
            if (layer, head) in seen:
                continue
            res = {"model": model, **measure(caps[model], layer, head)}
            with out.open("a") as fh:
                fh.write(json.dumps(res) + "\n")
            done.append(res)
            print(f"{model} L{layer}H{head}: " + ", ".join(
                f"{k} {v.get('query_rank_corr') or float('nan'):.2f}/{v['trustworthiness']:.3f}"
                for k, v in res["layouts"].items()), flush=True)
    print("| model | heads | layout | query_rank_corr | nearest_key_share | trust@10 | below 0.90 | median CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    for model in sorted({r["model"] for r in done}):
        rs = [r for r in done if r["model"] == model]
        for name in rs[0]["layouts"]:
            ls = [r["layouts"][name] for r in rs]
            q = [v["query_rank_corr"] for v in ls if v.get("query_rank_corr") is not None]
            s = [v["nearest_key_share"] for v in ls if v.get("nearest_key_share") is not None]
            t = [v["trustworthiness"] for v in ls]
            print(f"| {model} | {len(rs)} | {name} | {np.mean(q):.3f} | {np.mean(s):.3f} | {np.mean(t):.3f} | "
                  f"{sum(v < 0.9 for v in t)} | {np.median([v['cpu_s'] for v in ls]):.1f} |")


if __name__ == "__main__":
    main()
