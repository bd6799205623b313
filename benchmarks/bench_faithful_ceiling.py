"""How well can any 2D picture rank a head's keys by attention? (issue #15; docs/reference/faithfulness.md)

Every layout puts one point per query and per key in a plane shared by all sentences, and must also keep the joint
set's neighbourhoods (trustworthiness@10). This benchmark drops the second demand: each sentence's query and key
points are placed freely in 2D (sentences do not interact in the measure), maximising the mean per-query Spearman
correlation between −distance and attention directly — with soft ranks (a sigmoid of the differences of a row's
distances, each row's distances divided by their mean) — by Adam from the PCA start. The result, measured with the
layouts' own `query_rank_corr` and `nearest_key_share`, is what the plane itself allows: a lower bound on the best
picture (a local optimum), to be read against the normalised and padded high-dimensional spaces and against the
faithful layout, which pays for its neighbourhoods.

    python benchmarks/bench_faithful_ceiling.py minilm:L1H3 smollm2:L10H4 [--captures build/bench-captures]

Heads are named as in `real_heads.py`; captures are made there once. About 3 CPU-minutes per 10k-point text head.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_faithfulness import head_task  # noqa: E402
from real_heads import REPO, _capture  # noqa: E402


def _padded(rows) -> tuple:
    """Every sentence block as one padded batch: query ids [B, n], key ids [B, k], cover and centred attention ranks
    [B, n, k] (0 where a row has no ranking), each row's ranks scaled to norm 1."""
    import torch

    blocks = rows.blocks
    n = max(b.points.size for b in blocks)
    k = max(b.keys.size for b in blocks)
    qid, kid = np.zeros((len(blocks), n), np.int64), np.zeros((len(blocks), k), np.int64)
    cover, ranks = np.zeros((len(blocks), n, k), bool), np.zeros((len(blocks), n, k))
    for i, b in enumerate(blocks):
        qid[i, :b.points.size], kid[i, :b.keys.size] = b.points, b.keys
        ok = b.rank_ok[:, None] & b.cover
        cover[i, :b.points.size, :b.keys.size] = ok
        ranks[i, :b.points.size, :b.keys.size] = np.where(ok, b.attn_rank, 0.0)
    norm = np.sqrt((ranks ** 2).sum(axis=2, keepdims=True))
    ranks = np.divide(ranks, norm, out=np.zeros_like(ranks), where=norm > 0)
    return (torch.from_numpy(qid), torch.from_numpy(kid), torch.from_numpy(cover).float(),
            torch.from_numpy(ranks).float())


def free_layout(x: np.ndarray, rows, *, iters: int = 800, lr: float = 0.02, tau: float = 0.1,
                budget: int = 2 ** 21, seed: int = 0) -> np.ndarray:
    """2D positions of every point of the joint set ``x`` maximising the mean soft per-query Spearman of ``rows``
    (float32; sentences taken in batches of about ``budget`` query-key-key triples)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    start = xc @ vt[:2].T
    emb = torch.tensor(start / start.std(), dtype=torch.float32, requires_grad=True)
    qid, kid, cover, ranks = _padded(rows)
    batch = max(1, budget // (qid.shape[1] * kid.shape[1] ** 2))
    rows_total = float((ranks.abs().sum(dim=2) > 0).sum())
    opt = torch.optim.Adam([emb], lr=lr)
    for _ in range(iters):
        opt.zero_grad()
        for a in range(0, len(qid), batch):
            c, r = cover[a:a + batch], ranks[a:a + batch]
            d = (emb[qid[a:a + batch]][:, :, None, :] - emb[kid[a:a + batch]][:, None, :, :]).pow(2).sum(-1)
            d = (d + 1e-12).sqrt() * c
            d = d / (d.sum(dim=2, keepdim=True) / c.sum(dim=2, keepdim=True).clamp_min(1)).clamp_min(1e-12)
            soft = (torch.sigmoid((d[:, :, None, :] - d[:, :, :, None]) / tau) * c[:, :, None, :]).sum(-1) * c
            soft = (soft - soft.sum(dim=2, keepdim=True) / c.sum(dim=2, keepdim=True).clamp_min(1)) * c
            corr = (soft * r).sum(dim=2) / (soft.pow(2).sum(dim=2) + 1e-24).sqrt()  # finite gradient at 0
            (-corr.sum() / rows_total).backward()
        opt.step()
    return emb.detach().numpy().astype(np.float64)


def measure(folder: Path, layer: int, head: int, iters: int) -> dict:
    from atlas_build.metrics.faithfulness import QueryRows, highdim_faithfulness, layout_faithfulness
    from atlas_build.normalize import normalize
    from atlas_build.normalize.joint import JointSet

    sample, attention = head_task(folder, layer, head)
    qn, kn, _ = normalize(sample, metric="cosine")
    joint = JointSet.of(qn, kn)
    rows = QueryRows.of(sample, joint, attention)
    t0 = time.process_time()
    coords = free_layout(joint.x.astype(np.float64), rows, iters=iters)
    return {"free-2d": layout_faithfulness(rows, coords), "cpu_s": time.process_time() - t0,
            **highdim_faithfulness(rows, joint, metric="cosine")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("heads", nargs="+", help="MODEL:L<layer>H<head>")
    ap.add_argument("--captures", type=Path, default=REPO / "build" / "bench-captures")
    ap.add_argument("--iters", type=int, default=800)
    args = ap.parse_args()
    print("| head | space | query_rank_corr | nearest_key_share |\n|---|---|---|---|")
    for name in args.heads:
        m = re.fullmatch(r"([\w.-]+):L(\d+)H(\d+)", name)
        if not m:
            raise SystemExit(f"bad head name {name!r}: expected MODEL:L<layer>H<head>")
        _capture(m.group(1), args.captures)
        res = measure(args.captures / m.group(1), int(m.group(2)), int(m.group(3)), args.iters)
        for space in ("free-2d", "normalised", "padded"):
            v = res[space]
            print(f"| {name} | {space} | {v.get('query_rank_corr', float('nan')):.3f} | "
                  f"{v.get('nearest_key_share', float('nan')):.3f} |", flush=True)
        print(f"<!-- {name}: free-2d {res['cpu_s']:.0f} CPU-s -->", flush=True)


if __name__ == "__main__":
    main()
