"""Per-head CPU of two checkouts of this repository, side by side (not a test).

When the machine's speed drifts between runs (a shared host can be 1.3x slower an hour later), two separate
measurements do not compare. This runs the same heads of the 512-head benchmark model under checkout A and
checkout B at the same time, one process each (one core each on a 2-core machine), and prints each head's
`run_head` CPU seconds for the first look's layouts (pca-2d + pca-3d) and for issue #19's six layouts (no value
view), with the medians, the means and the ratio B / A, and the largest difference of any score.

    git worktree add /tmp/old <commit>
    python benchmarks/bench_heads_ab.py /tmp/old . [--out /tmp/s500] [--layer 13] [--heads 8]

OUT is bench_500_heads.py's folder: its site stage's capture is read, nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SETS = ("first look", "six")  #: bench_500_heads' CHEAP and SIX layout sets


def worker(repo: Path, out: Path, layer: int, heads: int) -> None:
    """In checkout `repo`: one JSON line per head with its CPU seconds and scores for each of `SETS`."""
    import os
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path[:0] = [str(repo), str(repo / "benchmarks")]
    import bench500_subset
    from bench_500_heads import CHEAP, SIX
    from atlas_build.pipeline.heads import run_head
    from atlas_build.project import warm_up

    manifest, cap = bench500_subset._capture(out)
    tasks = {name: bench500_subset.head_tasks(manifest, cap, [layer], layouts, values=False)
             for name, layouts in zip(SETS, (CHEAP, SIX))}
    warm_up()
    run_head(tasks["first look"][0])  # compiles the scoring kernels outside the timing
    for i in range(min(heads, len(tasks["six"]))):
        row: dict = {"head": i}
        for name, ts in tasks.items():
            t0 = time.process_time()
            res = run_head(ts[i])
            row[name] = time.process_time() - t0
            row[f"{name} scores"] = res.trust
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="checkout A (before)")
    ap.add_argument("b", type=Path, help="checkout B (after)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/s500"))
    ap.add_argument("--layer", type=int, default=13)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.out, args.layer, args.heads)
    cmd = [sys.executable, __file__, str(args.a), str(args.b), "--out", str(args.out), "--layer", str(args.layer),
           "--heads", str(args.heads), "--worker"]
    procs = [subprocess.Popen([*cmd, str(repo.resolve())], stdout=subprocess.PIPE, text=True)
             for repo in (args.a, args.b)]
    rows = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a worker failed with exit code {proc.returncode}")
        rows.append([json.loads(line) for line in stdout.splitlines() if line.startswith("{")])
    a, b = rows
    print(f"layer {args.layer}, heads 0-{len(a) - 1}, run_head CPU-s, A = {args.a}, B = {args.b}")
    for name in SETS:
        ca, cb = [r[name] for r in a], [r[name] for r in b]
        print(f"  {name:10s} A median {statistics.median(ca):6.3f} mean {statistics.mean(ca):6.3f} | B median "
              f"{statistics.median(cb):6.3f} mean {statistics.mean(cb):6.3f} | B/A of medians "
              f"{statistics.median(cb) / statistics.median(ca):.3f}, B - A of means "
              f"{statistics.mean(cb) - statistics.mean(ca):+.3f}")
        diffs = [abs(rb[f"{name} scores"][lay].get(m, 0.0) - ra[f"{name} scores"][lay].get(m, 0.0))
                 for ra, rb in zip(a, b) for lay in ra[f"{name} scores"] for m in ra[f"{name} scores"][lay]]
        print(f"  {'':10s} largest score difference {max(diffs, default=0.0):.6f}")


if __name__ == "__main__":
    main()
