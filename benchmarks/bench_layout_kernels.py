"""The layout kernels against their references on real heads (not a test): t-SNE with our gradient
(`project.tsne_gradient`: our attraction, and our FFT repulsion in 2D, `project.tsne_fft`) against openTSNE's own,
and UMAP's SGD (`project.umap_sgd`: float32, tabled powers, a sample's repulsive steps summed) against umap-learn's
own `optimize_layout_euclidean` on the same graph, start, schedule and settings. Per head: CPU seconds of each
(median of --repeats runs, one process, one BLAS thread), the ratio, and trustworthiness@10 (mean over three seeded
2k samples); t-SNE 2D is the full layout (early exaggeration + main phase), t-SNE 3D the refinement from the lifted
2D layout, and "six layouts" one `project()` of PCA, t-SNE and UMAP in 2D and 3D (its trust: the mean of the four
t-SNE and UMAP layouts').

    python benchmarks/bench_layout_kernels.py [--heads minilm:L1H3,smollm2:L15H1] [--repeats 3]

Heads are named MODEL:L<layer>H<head> over the demo's models and samples (benchmarks/real_heads.py; captured once
into --captures).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_500_heads import SIX  # noqa: E402
from bench_projections import trust  # noqa: E402
from real_heads import DEFAULT_HEADS, real_heads  # noqa: E402


def umap_learn_optimize(graph, init: np.ndarray, *, a: float, b: float, n_epochs: int, learning_rate: float,
                        negative_sample_rate: int, seed: int, rescale: bool = True) -> np.ndarray:
    """`umap_sgd.optimize`'s contract run by umap-learn's own kernel (sequential, its float64 arithmetic)."""
    from umap.layouts import optimize_layout_euclidean

    from atlas_build.project import umap_sgd

    g, epochs_per_sample = umap_sgd.schedule(graph, n_epochs)
    emb = umap_sgd._initial_layout(init, seed, rescale)
    rng_state = np.random.RandomState(seed).randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
    return optimize_layout_euclidean(emb, emb, g.row, g.col, int(n_epochs), emb.shape[0], epochs_per_sample, a, b,
                                     rng_state.astype(np.int64), 1.0, learning_rate, float(negative_sample_rate),
                                     parallel=False, move_other=True)


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """openTSNE's own gradient for t-SNE and umap-learn's own SGD for UMAP, while inside."""
    from openTSNE.tsne import kl_divergence_bh, kl_divergence_fft

    from atlas_build.project import tsne_gradient, umap_sgd

    saved = tsne_gradient.kl_fft, tsne_gradient.kl_bh, umap_sgd.optimize
    tsne_gradient.kl_fft, tsne_gradient.kl_bh = kl_divergence_fft, kl_divergence_bh
    umap_sgd.optimize = umap_learn_optimize
    try:
        yield
    finally:
        tsne_gradient.kl_fft, tsne_gradient.kl_bh, umap_sgd.optimize = saved


def timed(run: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Median CPU seconds of `repeats` runs and the last run's output."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        out = run()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def measure(x: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """Each stage's CPU seconds and trustworthiness, ours and the reference's."""
    from threadpoolctl import threadpool_limits

    from atlas_build.project import ProjectionParams, methods, project
    from atlas_build.project.knn import knn_graph, prepare

    p = ProjectionParams()
    xp = prepare(x, p.metric)
    graph = knn_graph(xp, max(int(3 * p.tsne_perplexity), p.umap_n_neighbors), p.metric, seed=p.seed)
    affinities = methods.tsne_affinities(graph, p.tsne_perplexity)
    fuzzy = methods.umap_graph(graph, p.umap_n_neighbors)
    basis = methods.pca_basis(xp, 3)
    flat = methods.tsne_layout(affinities, basis[:, :2], seed=p.seed, early_iter=p.tsne_early_iter,
                               n_iter=p.tsne_iter, exaggeration=p.tsne_exaggeration, dof=p.tsne_dof)
    lifted = methods.lift(flat, methods.diffuse(affinities, basis[:, 2], methods.LIFT_SMOOTHING), methods.LIFT_DEPTH)
    stages = {
        "t-SNE 2D": lambda: methods.tsne_layout(affinities, basis[:, :2], seed=p.seed, early_iter=p.tsne_early_iter,
                                                n_iter=p.tsne_iter, exaggeration=p.tsne_exaggeration,
                                                dof=p.tsne_dof),
        "t-SNE 3D refinement": lambda: methods.tsne_3d(affinities, lifted, seed=p.seed, main_iter=p.tsne_iter),
        "UMAP 2D": lambda: methods.umap_layout(fuzzy, basis[:, :2], seed=p.seed, min_dist=p.umap_min_dist,
                                               n_epochs=p.umap_n_epochs, learning_rate=p.umap_learning_rate,
                                               negative_sample_rate=p.umap_negative_sample_rate),
        "six layouts": lambda: project(x, SIX, p),
    }
    out: dict[str, dict[str, float]] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, run in stages.items():
            row = {}
            for label, ctx in (("ours", contextlib.nullcontext), ("reference", reference_kernels)):
                with ctx():
                    row[f"{label} CPU-s"], emb = timed(run, repeats)
                layouts = [emb[name] for name in SIX if not name.startswith("pca")] if isinstance(emb, dict) else [emb]
                row[f"{label} trust"] = float(np.mean([trust(xp, np.asarray(e)) for e in layouts]))
            out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default=",".join(DEFAULT_HEADS), help="comma-separated MODEL:L<l>H<h>")
    ap.add_argument("--captures", type=Path, default=Path("build/bench-captures"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from atlas_build.project import warm_up

    warm_up()
    ring = np.roll(np.eye(30), 1, axis=1) + np.roll(np.eye(30), -1, axis=1)
    umap_learn_optimize(ring, np.random.default_rng(0).normal(size=(30, 2)), a=1.6, b=0.9, n_epochs=5,
                        learning_rate=1.0, negative_sample_rate=5, seed=0)  # compiles umap-learn's kernel untimed
    ratios: dict[str, list[float]] = {}
    print("| head | points | stage | CPU-s ours / reference (ratio) | trust@10 ours / reference |")
    print("|---|---|---|---|---|")
    for head in real_heads(args.heads.split(","), args.captures):
        for stage, r in measure(head.x, args.repeats).items():
            ratio = r["ours CPU-s"] / r["reference CPU-s"]
            ratios.setdefault(stage, []).append(ratio)
            print(f"| {head.name} | {len(head.x):,} | {stage} | {r['ours CPU-s']:.2f} / {r['reference CPU-s']:.2f} "
                  f"({ratio:.2f}) | {r['ours trust']:.4f} / {r['reference trust']:.4f} |", flush=True)
    for stage, values in ratios.items():
        print(f"{stage}: median CPU ratio ours / reference {statistics.median(values):.2f} over {len(values)} heads")


if __name__ == "__main__":
    main()
