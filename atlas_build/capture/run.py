"""Stream sentences through a loaded model and write what its attention sees, layer by layer, to disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..datasets import Sentence
from ..errors import InputError
from . import hook
from .facts import text_config
from .sources import LoadedModel
from .store import (FORMAT_VERSION, META_FILE, TOKENS_FILE, CaptureResult, LayerWriter, TokenTable, tmp_path,
                    write_json_atomic, write_table_atomic)

TOKENIZE_CHUNK = 256
TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Encoded:
    sentence_id: int
    ids: tuple[int, ...]


def select_sentences(tokenizer: Any, sentences: Sequence[Sentence], token_budget: int,
                     max_length: int) -> list[Encoded]:
    """Tokenise sentences in order (default special tokens, truncated to max_length) until the budget is reached.

    Sentences with no tokens (or only special tokens) are skipped; the first sentence that would overflow the budget ends the selection.
    """
    out: list[Encoded] = []
    total = 0
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
    for start in range(0, len(sentences), TOKENIZE_CHUNK):
        chunk = sentences[start:start + TOKENIZE_CHUNK]
        enc = tokenizer([s.text for s in chunk], truncation=True, max_length=max_length)["input_ids"]
        for s, ids in zip(chunk, enc):
            if not ids or all(i in special for i in ids):
                continue
            if total + len(ids) > token_budget:
                return out
            out.append(Encoded(s.sentence_id, tuple(int(i) for i in ids)))
            total += len(ids)
            if total == token_budget:
                return out
    return out


def pad_batch(batch: Sequence[Encoded], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask (positions of real tokens stay 0..n-1)."""
    T = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        mask[b, :len(e.ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


class _BatchSink:
    """Recorder: for each layer's attention call, keep only real tokens and append them to that layer's files."""

    def __init__(self, writers: list[LayerWriter], dtype: str):
        self.writers = writers
        self.dtype = TORCH_DTYPES[dtype]
        self.batch: Sequence[Encoded] = ()
        self.valid: torch.Tensor | None = None
        self.seen: set[int] = set()

    def start(self, batch: Sequence[Encoded], valid: torch.Tensor) -> None:
        self.batch, self.valid, self.seen = batch, valid.bool(), set()

    def __call__(self, call: hook.AttentionCall) -> None:
        assert self.valid is not None
        if call.layer >= len(self.writers):
            raise RuntimeError(f"attention call for layer {call.layer}, model has {len(self.writers)} layers")
        valid, dt = self.valid, self.dtype

        def rows(x: torch.Tensor) -> np.ndarray:  # [B, h, T, d] → [n_real, h, d]
            return x.transpose(1, 2)[valid].to(dt).cpu().numpy()

        lengths = [len(e.ids) for e in self.batch]
        w = call.weights
        attention = torch.cat([w[b, :, :n, :n].reshape(-1) for b, n in enumerate(lengths)]).to(dt).cpu().numpy()
        self.writers[call.layer].write(rows(call.query), rows(call.key), rows(call.value),
                                       [e.sentence_id for e in self.batch], lengths, attention)
        self.seen.add(call.layer)


def token_table(tokenizer: Any, selected: Sequence[Encoded], special_ids: Sequence[int]) -> TokenTable:
    lengths = [len(e.ids) for e in selected]
    N = sum(lengths)
    vocab = np.fromiter((i for e in selected for i in e.ids), np.int64, N)
    text: list[str] = []
    for e in selected:
        text.extend(str(t) for t in tokenizer.convert_ids_to_tokens(list(e.ids)))
    return TokenTable(
        token_id=np.arange(N, dtype=np.uint32),
        sentence_id=np.repeat(np.array([e.sentence_id for e in selected], np.uint32), lengths),
        position=np.concatenate([np.arange(n, dtype=np.uint16) for n in lengths]) if N else np.zeros(0, np.uint16),
        sentence_length=np.repeat(np.array(lengths, np.uint16), lengths),
        vocab_id=vocab,
        special=np.isin(vocab, np.array(list(special_ids), np.int64)),
        text=text,
    )


def capture(loaded: LoadedModel, sentences: Sequence[Sentence], out_dir: Path, *, token_budget: int,
            max_length: int, batch_size: int = 16, dtype: str = "float16", progress: bool = False) -> CaptureResult:
    """Capture q, k, v and attention of every layer for sentences in order until ``token_budget`` tokens.

    Files are written per batch (memory stays bounded) to temp names and renamed when complete; ``capture.json``
    is written last.
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    facts, tok = loaded.facts, loaded.tokenizer
    if facts.input_kind != "text" or tok is None:
        raise InputError(f"{loaded.source}: capture() takes text; this model reads {facts.input_kind}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)
    for stale in [*out_dir.glob("L[0-9]*.arrow"), *out_dir.glob("A[0-9]*.arrow"), *out_dir.glob("*.arrow.tmp")]:
        stale.unlink()
    # Longer inputs would index past the position table (the tokenizer knows offsets such as RoBERTa's).
    for limit in (getattr(text_config(loaded.model.config), "max_position_embeddings", None),
                  getattr(tok, "model_max_length", None)):
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            max_length = min(max_length, limit)
    selected = select_sentences(tok, sentences, token_budget, max_length)
    if not selected:
        raise InputError(f"{loaded.source}: no sentence fits the token budget of {token_budget} "
                         f"(of {len(sentences)} sentences)")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    device = next(loaded.model.parameters()).device
    writers = [LayerWriter(out_dir, layer, dtype) for layer in range(facts.num_layers)]
    sink = _BatchSink(writers, dtype)
    n_tokens = sum(len(e.ids) for e in selected)
    from tqdm.auto import tqdm
    bar = tqdm(total=n_tokens, unit="tok", desc=f"capture {loaded.source}", disable=not progress, leave=False)
    try:
        for start in range(0, len(selected), batch_size):
            batch = selected[start:start + batch_size]
            inputs = pad_batch(batch, pad_id, device)
            sink.start(batch, inputs["attention_mask"])
            hook.run_forward(loaded.model, sink, **inputs)
            if len(sink.seen) != facts.num_layers:
                raise RuntimeError(f"forward pass recorded {len(sink.seen)} of {facts.num_layers} layers")
            bar.update(sum(len(e.ids) for e in batch))
    except BaseException:
        for w in writers:
            w.close()
            for p in w.paths:
                tmp_path(p).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    for w in writers:
        w.commit()
    tokens = token_table(tok, selected, facts.special_token_ids)
    write_table_atomic(tokens.to_arrow(), out_dir / TOKENS_FILE)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "facts": facts.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_tokens": n_tokens, "num_sentences": len(selected),
        "token_budget": token_budget, "max_length": max_length,
    }, out_dir / META_FILE)
    return CaptureResult(facts, tokens, out_dir, dtype)
