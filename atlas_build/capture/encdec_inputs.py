"""What an encoder–decoder capture feeds the model: encoded pairs (source ids, decoder ids), greedy targets, the
log-mel features of audio clips, and the token tables of both sides.

Decoder tokens are the model's decoder start token followed by the target's tokens (as the tokenizer encodes a
target, end-of-sequence included): teacher forcing, so every target token is a query and a key. A generated
target is the greedy continuation of the start token, stopped after the first end-of-sequence token or at
``max_target_tokens`` decoder tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..datasets.audio import AudioClip, resample
from ..errors import InputError
from .encdec_sources import LoadedEncDec
from .run import Encoded, _encode, token_table
from .store import TokenTable

#: Tokenizer limits at or above this are "no limit" (transformers' VERY_LARGE_INTEGER).
NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class EncodedPair:
    pair_id: int
    source: str  # the source text, or the audio clip's name
    target: str
    generated: bool
    encoder: Encoded  # text: the source's ids; audio: no ids (positions come from the features)
    decoder: Encoded  # the start token, then the target's ids
    seconds: float = 0.0  # audio: the clip's length


def tokenizer_limit(tokenizer: Any) -> int:
    v = getattr(tokenizer, "model_max_length", None)
    return v if isinstance(v, int) and 0 < v < NO_LIMIT else 0


def limits(loaded: LoadedEncDec) -> tuple[int, int]:
    """(encoder, decoder) sequence limits: the config's position tables, else the tokenizer's length (0: none)."""
    tok = tokenizer_limit(loaded.tokenizer)
    f = loaded.facts
    return f.encoder_limit or tok, f.decoder_limit or tok


def encode_targets(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], list | None]:
    """Target ids (``text_target``: tokenizers with a separate target vocabulary use it) and offsets if any."""
    if getattr(tokenizer, "is_fast", False):
        try:
            enc = tokenizer(text_target=texts, return_offsets_mapping=True)
            return enc["input_ids"], enc["offset_mapping"]
        except (NotImplementedError, ValueError, KeyError, TypeError):
            pass
    return tokenizer(text_target=texts)["input_ids"], None


def decoder_encoded(pair_id: int, start: int, target: str, ids: Sequence[int],
                    offsets: Sequence[tuple[int, int]] | None) -> Encoded:
    spans = None if offsets is None else ((0, 0), *((int(a), int(b)) for a, b in offsets))
    return Encoded(pair_id, (int(start), *(int(i) for i in ids)), target, spans)


def pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] and their mask (real tokens keep positions 0..n-1)."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[b, :len(r)] = 1
    return ids.to(device), mask.to(device)


def pad_id(loaded: LoadedEncDec) -> int:
    tok = loaded.tokenizer
    for v in (tok.pad_token_id, getattr(loaded.model.config, "pad_token_id", None), tok.eos_token_id):
        if isinstance(v, int):
            return v
    return 0


def audio_features(loaded: LoadedEncDec, clips: Sequence[AudioClip], device: torch.device) -> torch.Tensor:
    """Log-mel features [B, bins, frames] of clips padded with silence to the encoder's whole window."""
    fe, f = loaded.feature_extractor, loaded.facts
    rate = int(fe.sampling_rate)
    window = f.encoder_limit * f.frames_per_position * int(fe.hop_length)
    waves = [resample(c.samples, c.sampling_rate, rate) for c in clips]
    out = fe(waves, sampling_rate=rate, return_tensors="np", padding="max_length", max_length=window,
             truncation=True)["input_features"]
    param = next(loaded.model.parameters())
    return torch.from_numpy(np.asarray(out)).to(device, dtype=param.dtype)


def encoder_inputs(loaded: LoadedEncDec, sources: Sequence[Encoded] | Sequence[AudioClip],
                   device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs of the encoder for a batch (encoded source texts, or audio clips) and the [B, S] mask of its
    real positions (audio: every position, the model attends to the silence padding too)."""
    if loaded.facts.encoder_input == "audio":
        x = audio_features(loaded, [c for c in sources if isinstance(c, AudioClip)], device)
        return {"input_features": x}, torch.ones(x.shape[0], loaded.facts.encoder_limit, dtype=torch.long,
                                                 device=device)
    ids, mask = pad([e.ids for e in sources if isinstance(e, Encoded)], pad_id(loaded), device)
    return {"input_ids": ids, "attention_mask": mask}, mask


def greedy(loaded: LoadedEncDec, inputs: dict[str, torch.Tensor], max_tokens: int) -> list[list[int]]:
    """Greedy decoding from the start token: per row the decoder ids (start included), cut after the first
    end-of-sequence token or at ``max_tokens``. The encoder runs once; the decoder reuses its key/value cache."""
    from transformers.modeling_outputs import BaseModelOutput

    model, f = loaded.model, loaded.facts
    B = next(iter(inputs.values())).shape[0]
    device = next(iter(inputs.values())).device
    seq = torch.full((B, 1), f.decoder_start_token_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    eos = torch.tensor(f.eos_token_ids or (-1,), device=device)
    with torch.no_grad():
        enc = model.get_encoder()(**inputs)
        extra = {"attention_mask": inputs["attention_mask"]} if "attention_mask" in inputs else {}
        past = None
        while seq.shape[1] < max_tokens and not bool(done.all()):
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state), **extra,
                        decoder_input_ids=seq if past is None else seq[:, -1:], cache=past, use_cache=True)
            past = out.cache
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, eos[0].clamp(min=0), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done = done | torch.isin(nxt, eos)
    rows = []
    for row in seq.tolist():
        cut = next((i + 1 for i, t in enumerate(row[1:], 1) if t in f.eos_token_ids), len(row))
        rows.append(row[:cut])
    return rows


def audio_token_table(pairs: Sequence[EncodedPair], positions: int, seconds_per_position: float) -> TokenTable:
    """One row per encoder position of each clip: text ``"<start> s"``, piece ``frame <p>``; positions that start
    after the clip's end (silence padding the model still attends to) are flagged special."""
    N = len(pairs) * positions
    pos = np.tile(np.arange(positions, dtype=np.uint16), len(pairs))
    start = pos.astype(np.float64) * seconds_per_position
    seconds = np.repeat(np.array([p.seconds for p in pairs], np.float64), positions)
    return TokenTable(
        token_id=np.arange(N, dtype=np.uint32),
        sentence_id=np.repeat(np.array([p.pair_id for p in pairs], np.uint32), positions),
        position=pos, sentence_length=np.full(N, positions, np.uint16), vocab_id=np.full(N, -1, np.int64),
        special=start >= seconds, text=[f"{t:.2f} s" for t in start], piece=[f"frame {int(p)}" for p in pos])


def side_tables(loaded: LoadedEncDec, pairs: Sequence[EncodedPair], positions: int = 0) -> dict[str, TokenTable]:
    f = loaded.facts
    special = f.block("decoder").special_token_ids
    enc = audio_token_table(pairs, positions, f.seconds_per_position) if f.encoder_input == "audio" else \
        token_table(loaded.tokenizer, [p.encoder for p in pairs], special)
    return {"encoder": enc, "decoder": token_table(loaded.tokenizer, [p.decoder for p in pairs], special)}


def too_long(what: str, n: int, limit: int, side: str, unit: str = "tokens") -> InputError:
    return InputError(f"{what} has {n} {side} {unit}; the model reads at most {limit} (its position table): "
                      "shorten or drop it")


def encode_sources(loaded: LoadedEncDec, texts: list[str], pair_ids: list[int]) -> list[Encoded]:
    ids, spans = _encode(loaded.tokenizer, texts, NO_LIMIT)
    return [Encoded(pid, tuple(int(i) for i in r), t, None if spans is None else tuple(map(tuple, spans[j])))
            for j, (pid, t, r) in enumerate(zip(pair_ids, texts, ids))]
