"""Size budgets of a built site (issues 6 and 7): per model, per head page, largest file, total; raw, gzip-compressed
and as GitHub Pages serves it (html/js/css/json compressed; .arrow, .bin and .png as they are).

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atlas_build.export.paths import layout_file  # noqa: E402

MB, KB = 2**20, 2**10
COMPRESSED = (".html", ".js", ".css", ".json", ".xml", ".svg", ".txt")
SAMPLE_HEADS = 12


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 6, mtime=0))


def served(path: Path) -> int:
    return gz(path) if path.suffix in COMPRESSED else path.stat().st_size


def head_file(data: Path, manifest: dict, kind: str, h: dict, layout: str = "") -> Path:
    return data / manifest["files"][kind].format(layer=h["layer"], head=h["head"], layout=layout)


def page_files(data: Path, manifest: dict, h: dict) -> list[Path]:
    """What opening a head page fetches: manifest, the head's own file, the tokens, its default layout (the file
    that holds it: a nested layout's host) and the thumbnail shown until the view is drawn."""
    layout = manifest.get("default_layout") or next((name for name in manifest["layouts"] if name.endswith("-2d")),
                                                    manifest["layouts"][0])
    host = layout_file(manifest, layout)[0]
    files = [data / "manifest.json", head_file(data, manifest, "head", h), data / manifest["tokens"]["file"],
             head_file(data, manifest, "coords", h, host)]
    thumb = head_file(data, manifest, "thumb", h, layout)
    return files + ([thumb] if thumb.is_file() else [])


def by_kind(data: Path, manifest: dict) -> dict[str, int]:
    """Bytes per kind of per-head file over the whole model (coords, norms, attn, thumbs, …)."""
    out: dict[str, int] = {}
    for path in data.rglob("*"):
        if path.is_file():
            kind = path.relative_to(data).parts[0] if len(path.relative_to(data).parts) > 1 else path.name
            out[kind] = out.get(kind, 0) + path.stat().st_size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(site: Path) -> None:
    files = [p for p in site.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    biggest = max(files, key=lambda p: p.stat().st_size)
    print(f"site {site}: {len(files)} files, {total / MB:.1f} MB (budget 1024 MB); largest file "
          f"{biggest.relative_to(site)} {biggest.stat().st_size / MB:.2f} MB (budget 50 MB)")
    # a model on one dataset: data/<model>/; on several: data/<model>/<dataset>/, each held to the per-model budget
    for manifest_path in sorted([*site.glob("data/*/manifest.json"), *site.glob("data/*/*/manifest.json")]):
        data = manifest_path.parent
        m = json.loads(manifest_path.read_text())
        size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        heads, points = len(m["heads"]), m["points"]["count"]
        scaled = size / heads / max(points, 1) * 144 * 10_000
        raw, packed, sent = [], [], []
        for h in m["heads"][:SAMPLE_HEADS]:
            opened = page_files(data, m, h)
            raw.append(sum(p.stat().st_size for p in opened))
            packed.append(sum(gz(p) for p in opened))
            sent.append(sum(served(p) for p in opened))
        print(f"  {data.relative_to(site / 'data')}: {heads} heads x {points} points, {size / MB:.1f} MB "
              f"(scaled to 144 heads x 10k points: {scaled / MB:.1f} MB, budget 100 MB)")
        print(f"    data to open a head page: median {statistics.median(raw) / KB:.0f} KB raw, "
              f"{statistics.median(packed) / KB:.0f} KB gzip, {statistics.median(sent) / KB:.0f} KB served "
              f"(budget 300 KB); scaled to 10k points: {statistics.median(raw) / KB * 10_000 / max(points, 1):.0f} KB raw")
        h = m["heads"][0]
        for p in page_files(data, m, h):
            print(f"      {str(p.relative_to(data)):34s} {p.stat().st_size / KB:7.1f} KB raw {served(p) / KB:7.1f} KB served")
        print("    bytes by kind: " + ", ".join(f"{k} {v / MB:.1f} MB" for k, v in list(by_kind(data, m).items())[:8]))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo/site"))
