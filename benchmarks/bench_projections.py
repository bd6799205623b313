"""Default-library projections vs atlas_build.project on one synthetic attention head (not a test).

Data: a seeded head-like joint set of N queries + N keys (d=64): tokens from a Zipf vocabulary in sentences, vectors
= type embedding + smooth position embedding through separate W_Q, W_K, plus noise; keys translated so the means
coincide (as normalize does).
Default pipeline: sklearn TSNE(metric="cosine"), umap.UMAP(metric="cosine") (numba warm-up timed separately),
sklearn PCA. Ours: project() with one process, and a 2-worker pool over several heads (throughput).
Quality: trustworthiness@10 (cosine), mean over three seeded 2k samples; Spearman of layout q-k distance vs high-dim
q.k over random same-sentence pairs (j <= i; more negative = distance is a better proxy for attention).

--with-3d adds the 3D layouts and the cost of all six layouts in one call against the 2D set (PCA + t-SNE + UMAP).
--real runs on real heads instead (benchmarks/real_heads.py: the demo's models over the demo's samples): per head
the CPU seconds of the 2D set and of all six layouts, their ratio, trustworthiness@10 of every t-SNE/UMAP layout and
the depth of the 3D ones (smallest principal spread / largest); with --default-3d also scikit-learn
TSNE(n_components=3) and umap-learn UMAP(n_components=3) on the same heads (their layouts are kept in the capture
folder and reused), and every 3D t-SNE's trustworthiness on whole-set neighbourhoods (`local_trust`). With
--umap-seeds N the UMAP 3D comparison is of means over seeds 0..N-1 on both sides (ours: the whole UMAP pair per
seed; umap-learn: `random_state`, also kept): a UMAP layout moves with its seed by about as much as the two
libraries differ, while both t-SNEs start from PCA and give the same layout for every seed.

    python benchmarks/bench_projections.py [--n 5000] [--repeats 1] [--heads 4] [--with-3d]
    python benchmarks/bench_projections.py --real [--real-heads minilm:L1H3,smollm2:L5H4] [--default-3d]
    python benchmarks/bench_projections.py --real --default-3d --umap-seeds 5
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def head_like(n: int = 5000, d: int = 64, seed: int = 0, sent_len: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """[2n, d] float32 joint set [Q; K] and each token's sentence id [n]."""
    rng = np.random.default_rng(seed)
    vocab = 400
    freq = 1.0 / np.arange(1, vocab + 1) ** 1.1
    tok = rng.choice(vocab, size=n, p=freq / freq.sum())
    pos = np.arange(n) % sent_len
    sent = np.arange(n) // sent_len
    emb = rng.normal(size=(vocab, d))
    t = pos[:, None] / sent_len * np.pi * np.arange(1, 5)[None, :]
    pos_emb = np.hstack([np.sin(t), np.cos(t)]) @ rng.normal(size=(8, d)) * 1.5
    topic = rng.normal(size=(sent.max() + 1, d)) * 0.5
    h = emb[tok] + pos_emb + topic[sent] + rng.normal(size=(n, d)) * 0.6
    wq = np.eye(d) + rng.normal(size=(d, d)) * 0.25
    wk = np.eye(d) + rng.normal(size=(d, d)) * 0.25
    q = h @ wq + rng.normal(size=(n, d)) * 0.3
    k = h @ wk + rng.normal(size=(n, d)) * 0.3 + 3.0
    k += q.mean(0) - k.mean(0)
    return np.vstack([q, k]).astype(np.float32), sent


def trust(x: np.ndarray, emb: np.ndarray, samples: int = 3) -> float:
    """Trustworthiness@10 (cosine), mean over `samples` seeded samples of 2k points."""
    from sklearn.manifold import trustworthiness

    out = []
    for seed in range(samples):
        s = np.random.default_rng(seed).choice(len(x), size=min(2000, len(x)), replace=False)
        out.append(trustworthiness(x[s], emb[s], n_neighbors=10, metric="cosine"))
    return float(np.mean(out))


def local_trust(x: np.ndarray, emb: np.ndarray, k: int = 10, rows: int = 1000) -> float:
    """Trustworthiness@k of `rows` seeded points against their neighbourhoods in the whole set (cosine), not in a
    sample: the finest scale, where `trust` (2k-point samples) sees about the 50 nearest."""
    n = len(x)
    r = np.random.default_rng(0).choice(n, size=min(rows, n), replace=False)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    high = 1.0 - xn[r] @ xn.T
    high[np.arange(len(r)), r] = -np.inf
    rank = np.empty(high.shape, dtype=np.int64)
    np.put_along_axis(rank, np.argsort(high, axis=1), np.arange(n)[None, :], axis=1)  # 0 = itself
    e = np.asarray(emb, dtype=np.float64)
    low = (e * e).sum(1)[None, :] - 2.0 * e[r] @ e.T
    low[np.arange(len(r)), r] = -np.inf
    near = np.argsort(low, axis=1)[:, 1:k + 1]
    penalty = np.maximum(np.take_along_axis(rank, near, axis=1) - k, 0).sum()
    return float(1.0 - 2.0 / (len(r) * k * (2 * n - 3 * k - 1)) * penalty)


def depth(emb: np.ndarray) -> float:
    """How 3D a layout is: its smallest principal spread over its largest (0 = flat, 1 = round)."""
    sv = np.linalg.svd(emb - emb.mean(axis=0), compute_uv=False)
    return float(sv[-1] / sv[0])


def quality(x: np.ndarray, sent: np.ndarray, emb: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(trustworthiness@10, Spearman(layout q-k distance, q.k) over same-sentence pairs)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    n = len(sent)
    tw = trust(x, emb)
    i = rng.integers(0, n, size=20000)
    starts = np.searchsorted(sent, sent[i])
    j = starts + (rng.random(20000) * (i - starts + 1)).astype(int)  # same sentence, j <= i
    dot = np.einsum("ij,ij->i", x[i].astype(np.float64), x[n + j].astype(np.float64))
    dist = np.linalg.norm(emb[i].astype(np.float64) - emb[n + j], axis=1)
    return float(tw), float(spearmanr(dist, dot).statistic)


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray, float]:
    """Median wall seconds over `repeats`, the last result and median CPU seconds (all threads); prints both."""
    times, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    print(f"wall {statistics.median(times):.2f} s, cpu {statistics.median(cpus):.2f} s", flush=True)
    return statistics.median(times), np.asarray(out), statistics.median(cpus)


def default_pipeline(x: np.ndarray, layouts: list[str], repeats: int) -> dict[str, tuple[float, np.ndarray, float]]:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    res: dict[str, tuple[float, np.ndarray, float]] = {}
    t0 = time.perf_counter()
    import umap

    # >= 4096 points so pynndescent's kernels compile here, not in the timed run
    umap.UMAP(metric="cosine", n_epochs=5).fit_transform(np.random.default_rng(1).normal(size=(5000, 16)))
    print(f"  default umap import + numba warm-up: {time.perf_counter() - t0:.1f} s (once per process)", flush=True)
    for lay in layouts:
        method, dims = lay.split("-")
        k = int(dims[0])
        fn: Callable[[], np.ndarray] = {
            "pca": lambda: PCA(k).fit_transform(x),
            "tsne": lambda: TSNE(k, metric="cosine", random_state=0).fit_transform(x),
            "umap": lambda: umap.UMAP(n_components=k, metric="cosine").fit_transform(x),
        }[method]
        print(f"  default {lay}: ", end="")
        res[lay] = timed(fn, repeats)
    return res


def ours_pipeline(x: np.ndarray, layouts: list[str], repeats: int) -> dict[str, tuple[float, np.ndarray, float]]:
    from atlas_build.project import ProjectionParams, project, warm_up

    t0 = time.perf_counter()
    warm_up()
    print(f"  ours import + warm-up: {time.perf_counter() - t0:.1f} s (once per worker)", flush=True)
    params = ProjectionParams()
    res: dict[str, tuple[float, np.ndarray, float]] = {}
    for lay in layouts:  # per layout (each includes its own kNN graph: the shared graph is counted in every row)
        print(f"  ours {lay}: ", end="")
        res[lay] = timed(lambda: project(x, [lay], params)[lay], repeats)
    two_d = [lay for lay in layouts if lay.endswith("2d")]
    print("  ours 2D set in one call (shared kNN): ", end="")
    res["2d"] = timed(lambda: np.zeros(0) if project(x, two_d, params) else None, repeats)
    if len(two_d) < len(layouts):
        print("  ours all layouts in one call (shared kNN, 3D from 2D): ", end="")
        res["all"] = timed(lambda: np.zeros(0) if project(x, layouts, params) else None, repeats)
    return res


def throughput(n: int, layouts: list[str], heads: int, jobs: int) -> tuple[float, float]:
    """Wall seconds per head for `heads` heads through make_executor(jobs): (with pool start-up and each worker's
    warm-up, steady state once every worker is warm). A build pays start-up once for all its heads."""
    from atlas_build.executor import make_executor
    from atlas_build.project import ProjectionParams, project

    work = functools.partial(_one_head, n=n, layouts=tuple(layouts), params=ProjectionParams(), fn=project)
    tiny = functools.partial(_one_head, n=64, layouts=tuple(layouts), params=ProjectionParams(), fn=project)
    t0 = time.perf_counter()
    with make_executor(jobs) as ex:
        list(ex.map(tiny, list(range(2 * jobs)), desc="warm-up", progress=False))
        t1 = time.perf_counter()
        for _ in ex.map(work, list(range(heads)), desc="heads", progress=True):
            pass
        t2 = time.perf_counter()
    print(f"  pool start-up + warm-up: {t1 - t0:.1f} s (once per build)")
    return (t2 - t0) / heads, (t2 - t1) / heads


def _one_head(seed: int, *, n: int, layouts: tuple[str, ...], params: object, fn: Callable) -> int:
    x, _ = head_like(n, seed=seed)
    return len(fn(x, layouts, params))


def cpu_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median CPU seconds of `fn` (all threads) over `repeats` runs, and its last result."""
    cpus, out = [], None
    for _ in range(repeats):
        c0 = time.process_time()
        out = fn()
        cpus.append(time.process_time() - c0)
    return statistics.median(cpus), out


def default_3d(head, folder: "Path") -> tuple[tuple[float, np.ndarray], tuple[float, np.ndarray]]:
    """((CPU-s, layout) of scikit-learn TSNE 3D, same of umap-learn UMAP 3D) of a real head, computed once and kept
    in `folder/defaults` (the CPU-s are those of the run that computed them)."""
    path = folder / "defaults" / f"{head.name.replace(':', '_')}.npz"
    if path.exists():
        z = np.load(path)
        if z["tsne"].shape[0] == len(head.x):
            return (float(z["tsne_cpu"]), z["tsne"]), (float(z["umap_cpu"]), z["umap"])
    import umap
    from sklearn.manifold import TSNE

    cs, e_s = cpu_seconds(lambda: TSNE(3, metric="cosine", random_state=0).fit_transform(head.x), 1)
    cu, e_u = cpu_seconds(lambda: umap.UMAP(n_components=3, metric="cosine").fit_transform(head.x), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, tsne=e_s, umap=e_u, tsne_cpu=cs, umap_cpu=cu)
    return (cs, e_s), (cu, e_u)


def umap_learn_3d(head, folder: "Path", seed: int) -> np.ndarray:
    """umap-learn's 3D layout of a real head with `random_state=seed`, computed once and kept in `folder/defaults`."""
    path = folder / "defaults" / f"{head.name.replace(':', '_')}_umap_seed{seed}.npy"
    if path.exists():
        emb = np.load(path)
        if emb.shape[0] == len(head.x):
            return emb
    import warnings

    import umap

    with warnings.catch_warnings():  # a seed turns umap-learn's parallelism off, and it says so every run
        warnings.filterwarnings("ignore", message="n_jobs value")
        emb = umap.UMAP(n_components=3, metric="cosine", random_state=seed).fit_transform(head.x)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


def umap_3d_seeds(head, folder: "Path", seeds: int) -> tuple[list[float], list[float]]:
    """Trustworthiness@10 of our UMAP 3D and of umap-learn's, each with seeds 0..`seeds`-1."""
    from atlas_build.project import ProjectionParams, project

    ours = [trust(head.x, project(head.x, ["umap-2d", "umap-3d"], ProjectionParams(seed=s))["umap-3d"])
            for s in range(seeds)]
    return ours, [trust(head.x, umap_learn_3d(head, folder, s)) for s in range(seeds)]


def real(args: argparse.Namespace) -> None:
    """2D set vs all six layouts on real heads, and (--default-3d) the default libraries' 3D layouts."""
    from atlas_build.project import LAYOUT_NAMES, LAYOUTS, ProjectionParams, project, warm_up
    from real_heads import DEFAULT_HEADS, real_heads

    names = args.real_heads.split(",") if args.real_heads else list(DEFAULT_HEADS)
    heads = real_heads(names, Path(args.capture_dir))
    warm_up()
    params = ProjectionParams()
    six = [lay for lay in LAYOUT_NAMES if LAYOUTS[lay].method in ("pca", "tsne", "umap")]  # issue #19's set
    two_d = [lay for lay in six if LAYOUTS[lay].dims == 2]
    graph = ["tsne-2d", "umap-2d", "tsne-3d", "umap-3d"]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"CPU-s are medians of {args.repeats} runs; trustworthiness@10 means of 3 samples of 2k points", flush=True)
    print(f"{'head':20} {'points':>6} {'2D CPU-s':>8} {'six CPU-s':>9} {'ratio':>5}  " +
          " ".join(f"{lay:>7}" for lay in graph) + "  depth t/u" +
          ("  sklearn-3d umap-learn-3d (CPU-s; depth)" if args.default_3d else ""), flush=True)
    ratios, wins = [], []
    for h in heads:
        c2, _ = cpu_seconds(lambda: project(h.x, two_d, params), args.repeats)
        c6, out = cpu_seconds(lambda: project(h.x, six, params), args.repeats)
        tw = {lay: trust(h.x, out[lay]) for lay in graph}
        line = (f"{h.name:20} {len(h.x):6d} {c2:8.2f} {c6:9.2f} {c6 / c2:5.2f}  " +
                " ".join(f"{tw[lay]:7.4f}" for lay in graph) +
                f"  {depth(out['tsne-3d']):.2f}/{depth(out['umap-3d']):.2f}")
        ratios.append(c6 / c2)
        if args.default_3d:
            (cs, e_s), (cu, e_u) = default_3d(h, Path(args.capture_dir))
            ts, tu = trust(h.x, e_s), trust(h.x, e_u)
            ours_u, seeded = tw["umap-3d"], ""
            if args.umap_seeds > 1:
                many, theirs = umap_3d_seeds(h, Path(args.capture_dir), args.umap_seeds)
                ours_u, tu = float(np.mean(many)), float(np.mean(theirs))
                seeded = (f"  UMAP 3D over seeds 0-{args.umap_seeds - 1}: ours {ours_u:.4f} ({min(many):.4f}-"
                          f"{max(many):.4f}), umap-learn {tu:.4f} ({min(theirs):.4f}-{max(theirs):.4f})")
            wins.append((tw["tsne-3d"] - ts, ours_u - tu))
            line += (f"  {ts:10.4f} {tu:13.4f} ({cs:.0f} / {cu:.0f}; {depth(e_s):.2f}/{depth(e_u):.2f})"
                     f"  local t-SNE 2D/3D/sklearn {local_trust(h.x, out['tsne-2d']):.4f}/"
                     f"{local_trust(h.x, out['tsne-3d']):.4f}/{local_trust(h.x, e_s):.4f}" + seeded)
        print(line, flush=True)
    print(f"\nall six / 2D set, CPU per head: median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
    if wins:
        dt, du = np.array(wins).T
        print(f"ours - default trustworthiness@10 in 3D: t-SNE median {np.median(dt):+.4f} (min {dt.min():+.4f}), "
              f"UMAP median {np.median(du):+.4f} (min {du.min():+.4f}); below the default on "
              f"{int((dt < 0).sum())} (t-SNE) and {int((du < 0).sum())} (UMAP) of {len(dt)} heads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="queries per head (keys as many)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--heads", type=int, default=6, help="heads for the 2-worker throughput run (0 = skip)")
    ap.add_argument("--with-3d", action="store_true", help="also the 3D layouts (sklearn 3D t-SNE takes minutes)")
    ap.add_argument("--skip-default", action="store_true")
    ap.add_argument("--real", action="store_true", help="real heads of the demo's models instead of the synthetic one")
    ap.add_argument("--real-heads", default="", help="comma-separated MODEL:L<l>H<h> (default: 3 per model)")
    ap.add_argument("--capture-dir", default=str(Path(__file__).resolve().parents[1] / "build" / "bench-captures"),
                    help="where --real keeps its captures (reused by later runs)")
    ap.add_argument("--default-3d", action="store_true",
                    help="with --real: also sklearn TSNE and umap-learn in 3D (minutes per head)")
    ap.add_argument("--umap-seeds", type=int, default=1,
                    help="with --default-3d: compare UMAP 3D by the means over this many seeds of both libraries")
    args = ap.parse_args()
    if args.real:
        real(args)
        return
    layouts = ["pca-2d", "tsne-2d", "umap-2d"] + (["pca-3d", "tsne-3d", "umap-3d"] if args.with_3d else [])
    x, sent = head_like(args.n)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{x.shape[0]} points d={x.shape[1]}, layouts {layouts}", flush=True)
    print("ours:", flush=True)
    ours = ours_pipeline(x, layouts, args.repeats)
    per_head_jobs2 = None
    if args.heads:
        cold, per_head_jobs2 = throughput(args.n, ["pca-2d", "tsne-2d", "umap-2d"], args.heads, 2)
        print(f"  ours 2-worker pool, 2D layouts, {args.heads} heads: {per_head_jobs2:.2f} s per head once warm "
              f"({cold:.2f} s with start-up)")
    default = None
    if not args.skip_default:
        print("default:", flush=True)
        default = default_pipeline(x, layouts, args.repeats)

    print(f"\n{'layout':8} {'default s':>10} {'ours s':>8} {'ratio':>6} {'trust@10 def/ours':>18} "
          f"{'spearman def/ours':>18}")
    for lay in layouts:
        t_o, e_o, _ = ours[lay]
        tw_o, sp_o = quality(x, sent, e_o)
        if default:
            t_d, e_d, _ = default[lay]
            tw_d, sp_d = quality(x, sent, e_d)
            print(f"{lay:8} {t_d:10.2f} {t_o:8.2f} {t_d / t_o:6.1f} {tw_d:8.4f} / {tw_o:.4f} {sp_d:8.3f} / {sp_o:.3f}")
        else:
            print(f"{lay:8} {'-':>10} {t_o:8.2f} {'-':>6} {'-':>8} / {tw_o:.4f} {'-':>8} / {sp_o:.3f}")
    two_d = ["pca-2d", "tsne-2d", "umap-2d"]
    if "all" in ours:
        print(f"\nall six layouts per head: {ours['all'][2]:.1f} CPU-s against {ours['2d'][2]:.1f} for the 2D set "
              f"(ratio {ours['all'][2] / ours['2d'][2]:.2f}; wall {ours['all'][0]:.1f} s / {ours['2d'][0]:.1f} s)")
    if default:
        t_def = sum(default[lay][0] for lay in two_d)
        t_our = ours["2d"][0]
        c_def = sum(default[lay][2] for lay in two_d)
        c_our = ours["2d"][2]
        print(f"\n2D pipeline per head: default {t_def:.1f} s, ours {t_our:.1f} s in one process "
              f"(ratio {t_def / t_our:.1f}x); CPU (all threads) default {c_def:.1f} s, ours {c_our:.1f} s "
              f"(ratio {c_def / c_our:.1f}x)")
        if per_head_jobs2:
            print(f"ours with 2 workers: {per_head_jobs2:.1f} s per head (ratio {t_def / per_head_jobs2:.1f}x); "
                  f"144 heads: default {144 * t_def / 60:.0f} min, ours {144 * per_head_jobs2 / 60:.0f} min")


if __name__ == "__main__":
    main()
