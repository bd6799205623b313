"""A 512-head model end to end: capture, per-head cost, site size and the matrix page in chromium (not a test).

Model: `benchmarks/llama1b_random.toml`, a randomly initialised decoder of Llama-3.2-1B's shape (16 layers x 32 query
heads sharing 8 key/value heads, head dim 64, hidden 2048, RoPE) over the demo's Wikipedia sample (~5k tokens, so
~10k query + key points per head), with the default layout set (faithful-2d and the six PCA / t-SNE / UMAP layouts).
Every figure goes to OUT/results.json; stages can run separately and later ones read earlier results. Builds go
through the normal `atlas build` with its cache, so an interrupted stage resumes where it stopped.

Stages (`--stage`, several allowed; default: site subset browser; subset and browser in bench500_subset.py and
bench500_browser.py):

* site: the full 512-head model built with layouts pca-2d + pca-3d only (cheap) into OUT/cheap: capture wall time
  and peak RSS (the whole model over the whole sample, measured), per-head wall, export + site wall, the site's
  size and its largest file.
* subset: `--layers N` layers drawn with `--seed` from the model (every head of them), computed in a pool of
  `--jobs` workers like a build's, from the capture of the site stage: CPU seconds per head (process time inside
  the worker) for the default layout set and for the cheap set, and the bytes of each layout's per-head files
  (coordinates, thumbnail). Extrapolated to 512 heads: the whole build's wall time on 2 cores and the size of the
  real site (cheap site + the extra layouts' files), clearly labelled as extrapolated. `--six` adds issue #19's
  own set (the six PCA / t-SNE / UMAP layouts, no faithful-2d, no value view), extrapolated the same way.
* browser: the cheap site's matrix page in Debian chromium, `--runs` cold loads (fresh browser context each): ms
  from navigation start until every one of the 512 cells is drawn (thumbnail decoded or points on the canvas), and
  until a hover over a point of a cell answers with its tooltip; medians. The matrix page does not depend on how
  many layouts a head has: the default picture is the first 2D layout's thumbnails either way.
* whole: the real build (all layouts, all 512 heads) into OUT/full; over an hour of both cores, resumable. With
  `--six`, issue #19's six layouts without the value view into OUT/full-six instead.

Targets (issue #19): whole build <= 45 min on 2 cores, peak RSS <= 6 GiB, site <= 200 MB with no file over 5 MB,
matrix page interactive <= 2 s.

    python benchmarks/bench_500_heads.py [--out /tmp/s500] [--stage site subset browser whole]
        [--layers 2] [--seed 0] [--jobs 2] [--runs 5] [--six]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench500_browser import stage_browser  # noqa: E402
from bench500_subset import stage_subset  # noqa: E402
from buildrun import run_build  # noqa: E402

MANIFEST = HERE / "llama1b_random.toml"
CHEAP = ("pca-2d", "pca-3d")
#: issue #19's layout set, from before faithful-2d and the value view existed
SIX = ("pca-2d", "pca-3d", "tsne-2d", "tsne-3d", "umap-2d", "umap-3d")
MIB = 2**20
TARGETS = {"build_min": 45, "rss_gib": 6, "site_mb": 200, "file_mb": 5, "matrix_ms": 2000}


def manifest_variant(layouts: tuple[str, ...] | None, values: bool = True) -> str:
    """The benchmark manifest, with another layout set when given, and without the value view if not `values`."""
    text = MANIFEST.read_text("utf-8")
    if layouts is not None:
        text = re.sub(r"(?m)^layouts = .*$", "layouts = " + json.dumps(list(layouts)), text)
    return text if values else re.sub(r"(?m)^(layouts = .*)$", r"\1\nvalues = false", text)


def load_results(out: Path) -> dict:
    f = out / "results.json"
    return json.loads(f.read_text()) if f.exists() else {}


def save_results(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))


def build_phases(lines: list[tuple[float, str]], samples: list[tuple[float, int, int, int]]) -> dict:
    """Wall seconds and peak RSS of capture, heads and export + site, from a build's log lines and RSS samples."""
    cap_start = next((t for t, s in lines if "capture: computing" in s or "capture: reused" in s), 0.0)
    cap_end = next(t for t, s in lines if re.search(r"capture: (\d+ tokens|reused)", s))
    done = [t for t, s in lines if re.search(r"heads: layer \d+ done", s)]
    heads_end = done[-1] if done else cap_end
    per_layer = [b - a for a, b in zip([cap_end, *done[:-1]], done)]
    end = lines[-1][0]

    def peak(lo: float, hi: float, col: int) -> float:
        return max((s[col] for s in samples if lo <= s[0] <= hi), default=0) / MIB

    return {"capture_s": cap_end - cap_start, "capture_window": [cap_start, cap_end],
            "capture_reused": any("capture: reused" in s for _, s in lines),
            "capture_peak_mib": peak(0, cap_end, 1), "heads_s": heads_end - cap_end,
            "layer_walls": per_layer, "export_site_s": end - heads_end,
            "peak_tree_mib": max((s[2] for s in samples), default=0) / MIB,
            "peak_process_mib": max((s[3] for s in samples), default=0) / MIB}


def site_sizes(site: Path, model: str) -> dict:
    """Total bytes, largest file and the per-head files by kind and layout of a built site."""
    files = [f for f in site.rglob("*") if f.is_file()]
    largest = max(files, key=lambda f: f.stat().st_size)
    by_kind: dict[str, int] = {}
    data = site / "data" / model
    for f in data.rglob("*"):
        if not f.is_file():
            continue
        m = re.fullmatch(r"L\d+H\d+_(?P<layout>[\w-]+)\.(arrow|png)", f.name)
        rel = f.relative_to(data).parts
        kind = rel[0] + (f":{m['layout']}" if m else "")
        by_kind[kind] = by_kind.get(kind, 0) + f.stat().st_size
    by_kind["(outside data/: pages, assets)"] = sum(f.stat().st_size for f in files) - sum(by_kind.values())
    return {"total_mb": sum(f.stat().st_size for f in files) / MIB, "files": len(files),
            "largest": str(largest.relative_to(site)), "largest_mb": largest.stat().st_size / MIB,
            "by_kind_mb": {k: v / MIB for k, v in sorted(by_kind.items())}}


class CpuSampler:
    """CPU seconds (user + system) of the build process and of its whole tree, sampled from a thread."""

    def __init__(self, every: float = 0.5):
        import threading

        self.every, self.samples, self.t0 = every, [], time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            try:
                tree = me.children(recursive=True)
                cpu = [sum(p.cpu_times()[:2]) for p in tree]
                main = next((c for p, c in zip(tree, cpu) if "atlas_build.cli" in " ".join(p.cmdline())), None)
                if main is not None:
                    self.samples.append((time.monotonic() - self.t0, main, sum(cpu)))
            except Exception:  # noqa: BLE001 - a process ended between listing and reading
                pass
            self.stop.wait(self.every)

    def at(self, t: float, col: int = 1) -> float:
        """The last sample at or before t (seconds since start)."""
        return max(((s[0], s[col]) for s in self.samples if s[0] <= t), default=(0.0, 0.0))[1]

    def __enter__(self) -> "CpuSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def stage_site(out: Path, jobs: int, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "cheap.toml"
    manifest.write_text(manifest_variant(CHEAP))
    print(f"site: every head, layouts {', '.join(CHEAP)}; load {os.getloadavg()[0]:.2f}", flush=True)
    with CpuSampler() as cpu:
        run = run_build(manifest, out / "cheap", jobs, sample_seconds=0.2, echo=True)
    if run.returncode != 0:
        raise SystemExit(f"atlas build failed with exit code {run.returncode}")
    phases = build_phases(run.lines, run.samples)
    cap_start, cap_end = phases["capture_window"]
    phases["capture_cpu_s"] = cpu.at(cap_end) - cpu.at(cap_start)
    earlier = results.get("site", {})
    if phases["capture_reused"] and earlier.get("capture_cpu_s") and not earlier.get("capture_reused"):
        # a rebuild over the cached capture keeps the capture figures of the run that computed it
        phases.update({k: earlier[k] for k in ("capture_s", "capture_cpu_s", "capture_peak_mib")},
                      capture_reused=False, capture_measured_earlier=True)
    site = out / "cheap" / "site"
    model = json.loads(next((site / "data").glob("*/manifest.json")).read_text("utf-8"))["model"]
    per_layer = model["num_heads"]
    phases.update(wall_s=run.wall, peak_rss_mib=run.peak_rss / MIB, load_end=os.getloadavg()[0],
                  per_head_wall_median=(statistics.median(phases["layer_walls"]) / per_layer if phases["layer_walls"]
                                        else earlier.get("per_head_wall_median", float("nan"))),  # heads reused
                  sizes=site_sizes(site, model["name"]), heads=model["num_layers"] * per_layer, jobs=jobs)
    results["site"] = phases
    save_results(out, results)


def manifest_layouts() -> list[str]:
    """The layout set of the benchmark manifest (the default set)."""
    return json.loads(re.search(r"(?m)^layouts = (.*)$", MANIFEST.read_text("utf-8")).group(1))


def stage_whole(out: Path, jobs: int, results: dict, six: bool = False) -> None:
    """The real build of every head: the manifest's layouts into OUT/full, or (`six`) issue #19's six layouts
    without the value view into OUT/full-six."""
    name = "full-six" if six else "full"
    manifest = out / f"{name}.toml"
    manifest.write_text(manifest_variant(SIX, values=False) if six else manifest_variant(None))
    what = "the six PCA / t-SNE / UMAP layouts without values" if six else "every layout of the manifest"
    print(f"whole: every head, {what}; load {os.getloadavg()[0]:.2f}", flush=True)
    run = run_build(manifest, out / name, jobs, sample_seconds=0.5, echo=True)
    if run.returncode != 0:
        raise SystemExit(f"atlas build failed with exit code {run.returncode}")
    phases = build_phases(run.lines, run.samples)
    phases.update(wall_s=run.wall, peak_rss_mib=run.peak_rss / MIB, sizes=site_sizes(out / name / "site",
                                                                                      "llama1b-random"))
    results["whole-six" if six else "whole"] = phases
    save_results(out, results)


def extrapolate(results: dict, cores: int = 2, label: str = "default") -> dict:
    """Whole-build wall time and site size of a measured layout set (the default set) from the cheap build and the
    subset. The size of a set without the value view still counts the cheap site's value files."""
    from atlas_build.export.thumbnails import preview_layout

    site, sets = results["site"], results["subset"]["sets"]
    heads = site["heads"]
    full, cheap = sets[label], sets["cheap"]
    # every core busy with heads, nothing else; the mean, since the heads that lay out values cost more
    heads_wall = heads * full.get("cpu_mean", full["cpu_median"]) / cores
    export_extra = heads * max(0.0, full["export_cpu_median"] - cheap["export_cpu_median"])
    extra_layouts = [name for name in full["layouts"] if name not in cheap["layouts"]]
    # every 2D layout's thumbnail is in its layer's strip (about as large as the thumbnails, measured); only the
    # default layout's is also a file of its own: faithful-2d's in the full site where the cheap site has pca-2d's
    per_head_extra = sum(b for k, b in full["file_bytes_mean"].items() if k.split(":")[-1] in extra_layouts)
    for st, sign in ((full, 1), (cheap, -1)):
        per_head_extra += sign * st["file_bytes_mean"][f"thumbs:{preview_layout(st['layouts'], st['layouts'][0])}"]
    meta_extra = full["file_bytes_mean"]["manifest.json"] - cheap["file_bytes_mean"]["manifest.json"]
    sizes = site["sizes"]
    manifest_mb = sizes["by_kind_mb"].get("manifest.json", 0.0) + heads * meta_extra / MIB
    # capture on both cores (torch's threads) from its CPU seconds: its wall time on the loaded machine says little
    capture = site["capture_cpu_s"] / cores if site.get("capture_cpu_s") else site["capture_s"]
    return {
        "heads_cpu_h": heads * full.get("cpu_mean", full["cpu_median"]) / 3600, "capture_min": capture / 60,
        "build_wall_min": (capture + heads_wall + site["export_site_s"] + export_extra) / 60,
        "heads_wall_min": heads_wall / 60, "export_extra_min": export_extra / 60,
        "site_mb": sizes["total_mb"] + heads * (per_head_extra + meta_extra) / MIB, "manifest_mb": manifest_mb,
        "largest_layout_file_mb": max(v for k, v in full["file_bytes_max"].items() if ":" in k) / MIB,
        "extra_layouts": extra_layouts,
    }


def report(results: dict) -> None:
    gib = 1024
    if "site" in results:
        s = results["site"]
        sz = s["sizes"]
        print(f"\ncapture (measured, whole model over the whole sample): {s['capture_s']:.0f} s wall, "
              f"{s.get('capture_cpu_s', float('nan')):.0f} CPU-s"
              f"{' (reused from the cache)' if s['capture_reused'] else ''}"
              f"{' (by an earlier run of this stage)' if s.get('capture_measured_earlier') else ''}, peak RSS {s['capture_peak_mib'] / gib:.2f}"
              f" GiB; build peak RSS {s['peak_rss_mib'] / gib:.2f} GiB (target <= {TARGETS['rss_gib']} GiB), "
              f"largest process {s['peak_process_mib'] / gib:.2f} GiB"
              + (f", sum over workers {s['peak_tree_mib'] / gib:.2f} GiB"
                 if s["peak_tree_mib"] == s["peak_tree_mib"] else ""))  # NaN when not sampled
        print(f"cheap build ({', '.join(CHEAP)}; measured): {s['wall_s'] / 60:.1f} min wall, "
              f"heads {s['heads_s']:.0f} s "
              f"({s['per_head_wall_median']:.2f} s per head, median over layers, {s['jobs']} workers), export + site "
              f"{s['export_site_s']:.0f} s")
        print(f"cheap site (measured): {sz['total_mb']:.1f} MB in {sz['files']} files, largest {sz['largest']} "
              f"{sz['largest_mb']:.2f} MB")
        for k, v in sz["by_kind_mb"].items():
            print(f"    {k:28s} {v:8.2f} MB")
    if "subset" in results:
        sub = results["subset"]
        print(f"\nsubset (measured): layers {sub['layers']} (seed {sub['seed']}), {sub['jobs']} workers")
        for label, st in sub["sets"].items():
            q1, q3 = st["cpu_quartiles"]
            print(f"  {label:8s} {len(st['layouts'])} layouts: CPU per head median {st['cpu_median']:.2f} s, mean "
                  f"{st.get('cpu_mean', float('nan')):.2f} s "
                  f"(quartiles {q1:.2f}-{q3:.2f}), export of its layout files {st['export_cpu_median']:.2f} CPU-s, "
                  f"over {st['heads']} heads; load {st['load']:.1f}")
        full = sub["sets"]["default"]
        for k in sorted(full["file_bytes_mean"]):
            print(f"    {k:24s} mean {full['file_bytes_mean'][k] / 1024:7.1f} KB   max "
                  f"{full['file_bytes_max'][k] / 1024:7.1f} KB per head")
    for label in ([k for k in results["subset"]["sets"] if k != "cheap"]
                  if "site" in results and "subset" in results else []):
        e = extrapolate(results, label=label)
        print(f"\nEXTRAPOLATED to {results['site']['heads']} heads, set {label!r} (CPU-s per head x heads / 2 cores, "
              "as if both cores did nothing else):")
        print(f"  heads {e['heads_cpu_h']:.2f} CPU-h = {e['heads_wall_min']:.0f} min wall on 2 cores; whole build "
              f"{e['build_wall_min']:.0f} min (capture {e['capture_min']:.1f} min from its CPU-s + heads + export/site "
              f"measured on the cheap build + "
              f"{e['export_extra_min']:.1f} min for the extra layouts' files); target <= {TARGETS['build_min']} min")
        print(f"  site {e['site_mb']:.0f} MB (cheap site + each head's files and strips of "
              f"{', '.join(e['extra_layouts'])}); "
              f"largest layout file {e['largest_layout_file_mb']:.2f} MB, "
              f"manifest.json at most {e['manifest_mb']:.2f} MB "
              f"(if the layouts' scores stayed in it); targets <= {TARGETS['site_mb']} MB, "
              f"<= {TARGETS['file_mb']} MB")
    if "browser" in results:
        b = results["browser"]
        m = b["median"]
        print(f"\nmatrix page (measured, {len(b['runs'])} cold loads, medians): all {b['cells']} cells drawn "
              f"{m['all_drawn_ms']:.0f} ms after navigation start; hover answered {m['hover_ms']:.0f} ms after the "
              f"pointer entered a cell; sum {m['interactive_ms']:.0f} ms (target <= {TARGETS['matrix_ms']} ms)")
    for key in ("whole", "whole-six"):
        if key not in results:
            continue
        w = results[key]
        print(f"\n{key} build (measured): {w['wall_s'] / 60:.1f} min, peak RSS {w['peak_rss_mib'] / gib:.2f} GiB, "
              f"site {w['sizes']['total_mb']:.0f} MB, "
              f"largest {w['sizes']['largest']} {w['sizes']['largest_mb']:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/s500"))
    ap.add_argument("--stage", nargs="+", default=["site", "subset", "browser"], help="report: print results only",
                    choices=["site", "subset", "browser", "whole", "report"])
    ap.add_argument("--layers", type=int, default=2, help="layers measured by the subset stage")
    ap.add_argument("--seed", type=int, default=0, help="chooses the subset's layers")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--six", action="store_true", help="subset stage: also issue #19's own set, the six PCA / t-SNE /"
                    " UMAP layouts without faithful-2d and without the value view; whole stage: build that set")
    ap.add_argument("--runs", type=int, default=5, help="cold loads of the matrix page")
    ap.add_argument("--site", type=Path, help="browser stage: another built site (default: the cheap build's)")
    ap.add_argument("--model", default="llama1b-random", help="browser stage: the model whose matrix page opens")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out)
    for stage in args.stage:
        if stage == "site":
            stage_site(out, args.jobs, results)
        elif stage == "subset":
            sets = {"cheap": CHEAP, "default": tuple(manifest_layouts())}
            if args.six:
                sets["six"] = SIX
            results["subset"] = stage_subset(out, args.layers, args.seed, args.jobs, sets,
                                             without_values=frozenset({"six"}))
            save_results(out, results)
        elif stage == "browser":
            stage_browser(args.site or out / "cheap" / "site", args.model, args.runs, results, out)
        elif stage == "whole":
            stage_whole(out, args.jobs, results, six=args.six)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
