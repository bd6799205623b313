"""Capture an encoder–decoder model over pairs (source text → target text) or audio clips (→ target text): per
block (encoder, decoder, cross) and layer, q/k/v of every real token and the model's own attention, streamed to
disk in resumable batches (`encdec_store`, `batches`).

Pairs are taken in dataset order until the token budget (encoder + decoder tokens) is reached. A pair longer than
the model can read (its position table, else its tokenizer's length) is an `InputError` naming it; a pair within
the model's limit but longer than ``max_length`` (``models[].max_tokens``) on either side is skipped and counted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from ..datasets.audio import AudioClip
from ..datasets.pairs import Pair
from ..errors import InputError
from . import hook
from .batches import TORCH_DTYPES, check_finite, is_finished, resume
from .encdec import BLOCKS, KEY_SIDE, QUERY_SIDE, record
from .encdec_inputs import (EncodedPair, decoder_encoded, encode_sources, encode_targets, encoder_inputs, greedy,
                            limits, pad, pad_id, side_tables, too_long)
from .encdec_sources import LoadedEncDec
from .encdec_store import (KIND, PAIRS_FILE, TOKENS_DIR, BlockBatchWriter, EncDecCapture, load_encdec_capture,
                           write_tokens)
from .run import Encoded, _check_dtype, _digest
from .store import FORMAT_VERSION, META_FILE, committed_batches, plan_digest, write_json_atomic, write_table_atomic


class EncDecSink:
    """Recorder of one forward batch: each attention call goes to its block's writer (real tokens only)."""

    def __init__(self, loaded: LoadedEncDec, dtype: str):
        self.loaded, self.dtype = loaded, TORCH_DTYPES[dtype]
        self.biased = {b: loaded.facts.block(b).has_position_bias for b in BLOCKS}

    def start(self, writer: BlockBatchWriter, pair_ids: list[int], valid: dict[str, torch.Tensor],
              token_ids: dict[str, np.ndarray]) -> None:
        self.writer, self.pair_ids, self.valid, self.token_ids = writer, pair_ids, valid, token_ids
        self.seen = dict.fromkeys(BLOCKS, 0)

    def __call__(self, call: hook.AttentionCall) -> None:
        block, layer = self.loaded.modules[id(call.module)]
        if layer != self.seen[block]:
            raise RuntimeError(f"{block} attention call for layer {layer}, expected layer {self.seen[block]}")
        self.seen[block] += 1
        qv, kv = self.valid[QUERY_SIDE[block]].bool(), self.valid[KEY_SIDE[block]].bool()
        n_q, n_k = qv.sum(1).tolist(), kv.sum(1).tolist()

        def rows(x: torch.Tensor, valid: torch.Tensor, dt: torch.dtype = self.dtype) -> np.ndarray:
            return x.transpose(1, 2)[valid].to(dt).cpu().numpy()  # [B, h, T, d] → [n_real, h, d]

        def per_pair(x: torch.Tensor, dt: torch.dtype) -> np.ndarray:
            x = x.expand(len(n_q), *x.shape[1:]) if x.shape[0] == 1 else x
            return torch.cat([x[b, :, :a, :c].reshape(-1) for b, (a, c) in enumerate(zip(n_q, n_k))]).to(dt).cpu() \
                .numpy()

        bias = None
        if self.biased[block]:
            raw = call.bias if call.bias is not None else torch.zeros_like(call.weights)
            bias = per_pair(raw.expand(-1, call.weights.shape[1], -1, -1), torch.float32)
        tensors = {"queries": (call.query, qv), "keys": (call.key, kv), "values": (call.value, kv)}
        stored = {name: rows(*x) for name, x in tensors.items()} | {"attention": per_pair(call.weights, self.dtype)}
        check_finite(self.loaded.source, f"{block} layer {layer}", self.pair_ids, call.query.dtype, stored,
                     lambda name: per_pair(call.weights, torch.float32) if name == "attention"
                     else rows(*tensors[name], torch.float32))
        self.writer.write(block, self.token_ids[QUERY_SIDE[block]], stored["queries"],
                          self.token_ids[KEY_SIDE[block]], stored["keys"], stored["values"],
                          self.pair_ids, n_q, n_k, stored["attention"], bias)

    def check(self) -> None:
        for b in BLOCKS:
            if self.seen[b] != self.loaded.facts.block(b).num_layers:
                raise RuntimeError(f"forward pass recorded {self.seen[b]} of {self.loaded.facts.block(b).num_layers} "
                                   f"{b} layers")


def _targets(loaded: LoadedEncDec, chunk: Sequence[Pair | AudioClip], sources: Sequence[Any], max_target: int,
             device: torch.device) -> list[tuple[str, bool, Any]]:
    """(target text, generated?, decoder `Encoded`) per item: encoded given targets, greedy ones for the rest."""
    pid = lambda it: it.pair_id if isinstance(it, Pair) else it.clip_id  # noqa: E731
    given = [i for i, it in enumerate(chunk) if it.target is not None]
    out: list[Any] = [None] * len(chunk)
    start = loaded.facts.decoder_start_token_id
    if given:
        texts = [str(chunk[i].target) for i in given]
        ids, spans = encode_targets(loaded.tokenizer, texts)
        for j, i in enumerate(given):
            out[i] = (texts[j], False, decoder_encoded(pid(chunk[i]), start, texts[j], ids[j],
                                                        None if spans is None else spans[j]))
    todo = [i for i, it in enumerate(chunk) if it.target is None]
    if todo:
        if not loaded.can_generate:
            raise InputError(f"{loaded.source}: this model has no language-model head to generate targets; give "
                             "the dataset a target_field (or targets)")
        inputs, _ = encoder_inputs(loaded, [sources[i] for i in todo], device)
        for i, row in zip(todo, greedy(loaded, inputs, max_target)):
            text = loaded.tokenizer.decode(row[1:], skip_special_tokens=True).strip()
            out[i] = (text, True, replace(decoder_encoded(pid(chunk[i]), start, text, row[1:], None), text=text))
    return out


def select(loaded: LoadedEncDec, items: Sequence[Pair] | Sequence[AudioClip], token_budget: int, max_length: int,
           max_target: int, batch_size: int, device: torch.device) -> tuple[list[EncodedPair], int]:
    """Pairs in order until the token budget (encoder + decoder tokens), and how many were skipped as longer than
    ``max_length``; an `InputError` for a pair longer than the model's limit."""
    enc_limit, dec_limit = limits(loaded)
    audio = loaded.facts.encoder_input == "audio"
    max_target = min(max_target, dec_limit) if dec_limit else max_target
    window = loaded.facts.encoder_limit * loaded.facts.seconds_per_position
    out: list[EncodedPair] = []
    total = skipped = 0
    for at in range(0, len(items), batch_size):
        chunk = list(items[at:at + batch_size])
        if audio:
            sources: list[Any] = chunk
            for c in chunk:
                if c.seconds > window + 1e-9:
                    raise too_long(f"clip {c.clip_id} ({c.name!r})", round(c.seconds, 2), round(window, 2),
                                   "encoder", "seconds (the encoder window)")
        else:
            sources = encode_sources(loaded, [p.source for p in chunk], [p.pair_id for p in chunk])
        for it, src, (text, generated, dec) in zip(chunk, sources, _targets(loaded, chunk, sources, max_target,
                                                                             device)):
            n_enc = loaded.facts.encoder_limit if audio else len(src.ids)
            what = f"clip {it.clip_id} ({it.name!r})" if audio else f"pair {it.pair_id} ({it.source[:40]!r})"
            if not audio and enc_limit and n_enc > enc_limit:
                raise too_long(what, n_enc, enc_limit, "encoder")
            if dec_limit and len(dec.ids) > dec_limit:
                raise too_long(what, len(dec.ids), dec_limit, "decoder")
            if (not audio and n_enc > max_length) or len(dec.ids) > max_length:
                skipped += 1
                continue
            if total + n_enc + len(dec.ids) > token_budget:
                return out, skipped
            pid = it.clip_id if audio else it.pair_id
            encoded = Encoded(pid, (), it.name) if audio else src
            out.append(EncodedPair(pid, it.name if audio else it.source, text, generated, encoded, dec,
                                   it.seconds if audio else 0.0))
            total += n_enc + len(dec.ids)
    return out, skipped


def _pairs_table(pairs: Sequence[EncodedPair], tokens: dict) -> pa.Table:
    counts = {side: np.bincount(tokens[side].sentence_id.astype(np.int64), minlength=0) for side in tokens}
    return pa.table({
        "pair_id": pa.array([p.pair_id for p in pairs], pa.uint32()),
        "source": pa.array([p.source for p in pairs], pa.string()),
        "target": pa.array([p.target for p in pairs], pa.string()),
        "generated": pa.array([p.generated for p in pairs], pa.bool_()),
        "n_encoder": pa.array([int(counts["encoder"][p.pair_id]) for p in pairs], pa.uint32()),
        "n_decoder": pa.array([int(counts["decoder"][p.pair_id]) for p in pairs], pa.uint32()),
        "seconds": pa.array([p.seconds for p in pairs], pa.float32()),
    })


def capture_pairs(loaded: LoadedEncDec, items: Sequence[Pair] | Sequence[AudioClip], out_dir: Path, *,
                  token_budget: int, max_length: int, max_target_tokens: int = 32, batch_size: int = 16,
                  dtype: str = "float16") -> EncDecCapture:
    """Capture every block of an encoder–decoder model over pairs (text models) or clips (audio models)."""
    _check_dtype(dtype)
    f = loaded.facts
    audio = f.encoder_input == "audio"
    if audio != bool(items and isinstance(items[0], AudioClip)):
        want = "audio clips (a dataset of kind \"audio\")" if audio else "text pairs (a dataset of kind \"pairs\")"
        raise InputError(f"{loaded.source}: this model reads {want}")
    device = next(loaded.model.parameters()).device
    selected, skipped = select(loaded, items, token_budget, max_length, max_target_tokens, batch_size, device)
    if not selected:
        raise InputError(f"{loaded.source}: no pair fits: the first needs more tokens than the token budget of "
                         f"{token_budget} (datasets[].max_tokens) or models[].max_tokens ({max_length})")
    chunks = [selected[i:i + batch_size] for i in range(0, len(selected), batch_size)]
    out_dir = Path(out_dir)
    plan = {"kind": KIND, "source": loaded.source, "revision": loaded.revision, "facts": f.to_json(), "dtype": dtype,
            "batch_size": batch_size, "token_budget": token_budget, "max_length": max_length,
            "generation": {"method": "greedy", "max_target_tokens": max_target_tokens},
            "selection": _digest([np.array([p.pair_id, *p.encoder.ids, -1, *p.decoder.ids], np.int64).tobytes()
                                  for p in selected]),
            "audio": _digest([np.ascontiguousarray(c.samples).tobytes() for c in items]) if audio else ""}
    digest = plan_digest(plan)
    if is_finished(out_dir, digest):
        return load_encdec_capture(out_dir)
    done = resume(out_dir, plan)
    (out_dir / PAIRS_FILE).unlink(missing_ok=True)
    tokens = side_tables(loaded, selected, f.encoder_limit if audio else 0)
    clips = {c.clip_id: c for c in items} if audio else {}
    sink = EncDecSink(loaded, dtype)
    first = {side: 0 for side in tokens}
    for i, chunk in enumerate(chunks):
        sources = [clips[p.pair_id] for p in chunk] if audio else [p.encoder for p in chunk]
        enc_inputs, enc_valid = encoder_inputs(loaded, sources, device)
        dec_ids, dec_valid = pad([p.decoder.ids for p in chunk], pad_id(loaded), device)
        valid = {"encoder": enc_valid, "decoder": dec_valid}
        ids = {}
        for side in tokens:
            n = int(valid[side].sum())
            ids[side], first[side] = np.arange(first[side], first[side] + n, dtype=np.uint32), first[side] + n
        if i in done:
            continue
        writer = BlockBatchWriter(out_dir, i, dtype)
        try:
            sink.start(writer, [p.pair_id for p in chunk], valid, ids)
            record(loaded.model, sink, **enc_inputs, decoder_input_ids=dec_ids, decoder_attention_mask=dec_valid)
            sink.check()
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    if committed_batches(out_dir) != set(range(len(chunks))):
        raise RuntimeError(f"{loaded.source}: batches missing after the capture")
    write_tokens(out_dir, tokens)
    write_table_atomic(_pairs_table(selected, tokens), out_dir / PAIRS_FILE)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "kind": KIND, "facts": f.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_pairs": len(selected), "skipped_longer_than_max_tokens": skipped,
        "num_tokens": {side: len(t) for side, t in tokens.items()}, "token_budget": token_budget,
        "max_length": max_length, "generation": plan["generation"],
        "generated_targets": sum(p.generated for p in selected), "plan": digest, "num_batches": len(chunks),
        "tokens_dir": TOKENS_DIR,
    }, out_dir / META_FILE)
    cap = load_encdec_capture(out_dir)
    cap.batches_reused = len(done)
    return cap
