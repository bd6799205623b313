"""Size budgets of a built site (issue 6): per model, per head page, largest file, total; raw and gzip-compressed.

Usage: python benchmarks/bench_export_budget.py [SITE_DIR]   (default build/demo/site)
Budgets (10k points per head, 144 heads): <= 100 MB per model, <= 300 KB of data to open one head page,
no file over 50 MB, site <= 1 GB. Per-model figures are also scaled to 144 heads x 10k points.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys
from pathlib import Path

MB, KB = 2**20, 2**10


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 6))


def main(site: Path) -> None:
    files = [p for p in site.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    biggest = max(files, key=lambda p: p.stat().st_size)
    print(f"site {site}: {len(files)} files, {total / MB:.1f} MB (budget 1024 MB); largest file "
          f"{biggest.relative_to(site)} {biggest.stat().st_size / MB:.2f} MB (budget 50 MB)")
    for manifest_path in sorted(site.glob("data/*/manifest.json")):
        data = manifest_path.parent
        m = json.loads(manifest_path.read_text())
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        heads, points = len(m["heads"]), m["points"]["count"]
        scaled = size / heads / max(points, 1) * 144 * 10_000
        page_files = [manifest_path, data / m["points"]["file"], data / m["tokens"]["file"]]
        raw, packed = [], []
        for h in m["heads"]:
            files_h = page_files + [data / h["file"]]
            raw.append(sum(p.stat().st_size for p in files_h))
            packed.append(sum(gz(p) for p in files_h))
            if len(raw) >= 12:
                break
        print(f"  {m['model']['name']}: {heads} heads x {points} points, {size / MB:.1f} MB "
              f"(scaled to 144 heads x 10k points: {scaled / MB:.1f} MB, budget 100 MB)")
        print(f"    data to open a head page: median {statistics.median(raw) / KB:.0f} KB raw, "
              f"{statistics.median(packed) / KB:.0f} KB gzip (budget 300 KB)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo/site"))
