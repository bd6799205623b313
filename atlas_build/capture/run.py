"""Stream sentences (or images) through a loaded model and write what its attention sees, layer by layer, to disk."""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..datasets import Sentence
from ..datasets.images import ImageItem, ImagePreprocessor, dataset_license, patch_columns, tokens_per_image
from ..errors import InputError
from . import hook
from .facts import ModelFacts, text_config
from .sources import LoadedModel
from .store import (FORMAT_VERSION, IMAGES_DIR, META_FILE, TOKENS_FILE, WEIGHTS_FILE, CaptureResult, LayerWriter,
                    TokenTable, tmp_path, write_json_atomic, write_qk_weights, write_table_atomic)
from .weights import qk_weights

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
    """Recorder: for each layer's attention call, keep only real tokens and append them to that layer's files.

    ``lengths`` None means every sequence of the batch is full length (image models: no padding); the length is
    then read from the call itself. The first attention module seen per layer is kept (for its q/k weights)."""

    def __init__(self, writers: list[LayerWriter], dtype: str):
        self.writers = writers
        self.dtype = TORCH_DTYPES[dtype]
        self.sentence_ids: Sequence[int] = ()
        self.lengths: Sequence[int] | None = None
        self.valid: torch.Tensor | None = None
        self.seen: set[int] = set()
        self.seq_lens: set[int] = set()
        self.modules: dict[int, torch.nn.Module] = {}

    def start(self, sentence_ids: Sequence[int], lengths: Sequence[int] | None,
              valid: torch.Tensor | None) -> None:
        self.sentence_ids, self.lengths, self.seen = list(sentence_ids), lengths, set()
        self.valid = None if valid is None else valid.bool()

    def __call__(self, call: hook.AttentionCall) -> None:
        if call.layer >= len(self.writers):
            raise RuntimeError(f"attention call for layer {call.layer}, model has {len(self.writers)} layers")
        dt, valid = self.dtype, self.valid
        B, _, T, _ = call.query.shape
        lengths = list(self.lengths) if self.lengths is not None else [T] * B
        self.seq_lens.add(T)

        def rows(x: torch.Tensor) -> np.ndarray:  # [B, h, T, d] → [n_real, h, d]
            x = x.transpose(1, 2)
            x = x[valid] if valid is not None else x.reshape(-1, *x.shape[2:])
            return x.to(dt).cpu().numpy()

        w = call.weights
        attention = torch.cat([w[b, :, :n, :n].reshape(-1) for b, n in enumerate(lengths)]).to(dt).cpu().numpy()
        self.writers[call.layer].write(rows(call.query), rows(call.key), rows(call.value), self.sentence_ids,
                                       lengths, attention)
        self.seen.add(call.layer)
        self.modules.setdefault(call.layer, call.module)

    def qk_weights(self, facts: ModelFacts) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per-layer (W_Q, W_K) when every layer's attention module exposes them, else {}."""
        out = {}
        for layer in range(facts.num_layers):
            module = self.modules.get(layer)
            w = None if module is None else qk_weights(module, facts.num_heads, facts.num_kv_heads,
                                                       facts.head_dim)
            if w is None:
                return {}
            out[layer] = w
        return out


def _prepare_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)
    (out_dir / WEIGHTS_FILE).unlink(missing_ok=True)
    for stale in [*out_dir.glob("L[0-9]*.arrow"), *out_dir.glob("A[0-9]*.arrow"), *out_dir.glob("*.tmp"),
                  *out_dir.glob(f"{IMAGES_DIR}/*")]:
        stale.unlink()
    return out_dir


def _run_batches(loaded: LoadedModel, writers: list[LayerWriter], sink: _BatchSink, batches: Iterable[Any],
                 total: int, unit: str, progress: bool) -> None:
    """Drive the forward passes: ``batches`` yields (sentence_ids, lengths, valid mask, inputs, count)."""
    facts = loaded.facts
    from tqdm.auto import tqdm
    bar = tqdm(total=total, unit=unit, desc=f"capture {loaded.source}", disable=not progress, leave=False)
    try:
        for sentence_ids, lengths, valid, inputs, count in batches:
            sink.start(sentence_ids, lengths, valid)
            hook.run_forward(loaded.model, sink, **inputs)
            if len(sink.seen) != facts.num_layers:
                raise RuntimeError(f"forward pass recorded {len(sink.seen)} of {facts.num_layers} layers")
            bar.update(count)
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
        raise InputError(f"{loaded.source}: capture() takes text; this model reads {facts.input_kind} "
                         "(use capture_images)")
    out_dir = _prepare_dir(out_dir)
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

    def batches() -> Iterator[tuple]:
        for start in range(0, len(selected), batch_size):
            batch = selected[start:start + batch_size]
            inputs = pad_batch(batch, pad_id, device)
            yield ([e.sentence_id for e in batch], [len(e.ids) for e in batch], inputs["attention_mask"], inputs,
                   sum(len(e.ids) for e in batch))

    _run_batches(loaded, writers, sink, batches(), n_tokens, "tok", progress)
    if weights := sink.qk_weights(facts):
        write_qk_weights(out_dir, weights, dtype)
    tokens = token_table(tok, selected, facts.special_token_ids)
    write_table_atomic(tokens.to_arrow(), out_dir / TOKENS_FILE)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "facts": facts.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_tokens": n_tokens, "num_sentences": len(selected),
        "token_budget": token_budget, "max_length": max_length,
    }, out_dir / META_FILE)
    return CaptureResult(facts, tokens, out_dir, dtype)


# --- images --------------------------------------------------------------------------------------------------------


def _hw(v: Any, default: int) -> tuple[int, int]:
    if v is None or v == () or v == []:
        return default, default
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


def image_preprocessor(loaded: LoadedModel, image_size: int | None = None) -> ImagePreprocessor:
    """The loaded model's `ImagePreprocessor` (its own, or one built from its transformers image processor's
    mean/std; ImageNet mean/std when it has none), at ``image_size`` when given."""
    proc = loaded.tokenizer
    patch = _hw(loaded.facts.patch_size or getattr(loaded.model.config, "patch_size", 16), 16)[0]
    if isinstance(proc, ImagePreprocessor):
        return proc if image_size is None else dataclasses.replace(proc, size=int(image_size))
    if proc is None and image_size is None:
        image_size = _hw(getattr(loaded.model.config, "image_size", 224), 224)[0]
    return ImagePreprocessor.from_processor(proc, size=image_size, patch_size=patch)


def image_token_table(image_ids: Sequence[int], grid: tuple[int, int], num_prefix_tokens: int) -> TokenTable:
    """Tokens of images laid out one after another: prefix tokens ([CLS], then [REG1], ...; flagged special) and
    then the patches in row-major order (text ``patch r<row> c<col>``)."""
    cols = patch_columns(len(image_ids), grid, num_prefix_tokens)
    T = tokens_per_image(grid, num_prefix_tokens)
    N = len(image_ids) * T
    one = ["[CLS]" if p == 0 else f"[REG{p}]" for p in range(num_prefix_tokens)]
    one += [f"patch r{r} c{c}" for r in range(grid[0]) for c in range(grid[1])]
    return TokenTable(
        token_id=np.arange(N, dtype=np.uint32),
        sentence_id=np.repeat(np.asarray(image_ids, np.uint32), T),
        position=cols["position"],
        sentence_length=np.full(N, T, np.uint16),
        vocab_id=np.full(N, -1, np.int64),
        special=cols["prefix"],
        text=one * len(image_ids),
        patch_row=cols["patch_row"],
        patch_col=cols["patch_col"],
    )


def _save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image
    tmp = tmp_path(path)
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8), "RGB").save(tmp, format="PNG", optimize=False)
    os.replace(tmp, path)


def image_file(image_id: int) -> str:
    return f"{IMAGES_DIR}/{int(image_id)}.png"


def capture_images(loaded: LoadedModel, items: Sequence[ImageItem], out_dir: Path, *, image_size: int | None = None,
                   batch_size: int = 16, dtype: str = "float16", progress: bool = False) -> CaptureResult:
    """Capture q, k, v and attention of every layer for images: one sequence per image (sentence id = image id),
    the prefix tokens then one token per patch. Each fitted square picture the model saw is saved as
    ``images/<image_id>.png``. ``image_size`` (pixels per side) defaults to the preprocessor's own size.

    The facts written with the capture describe the grid actually fed (the probe pass may have used another size).
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    facts, model = loaded.facts, loaded.model
    if facts.input_kind != "image":
        raise InputError(f"{loaded.source}: capture_images() takes images; this model reads {facts.input_kind}")
    if not items:
        raise InputError(f"{loaded.source}: no images to capture")
    ids = [int(it.image_id) for it in items]
    if len(set(ids)) != len(ids):
        raise InputError(f"{loaded.source}: duplicate image ids")
    proc = image_preprocessor(loaded, image_size)
    size = proc.size
    ph, pw = _hw(facts.patch_size or getattr(model.config, "patch_size", 16), 16)
    if size < ph or size < pw:
        raise InputError(f"{loaded.source}: image size {size} is smaller than one {ph}x{pw} patch")
    grid = (size // ph, size // pw)
    config = model.config
    trained = _hw(getattr(config, "image_size", size), size)
    extra: dict[str, Any] = {}
    # Models that only interpolate their position table on request (ViT, DeiT, ...) need the flag at another size;
    # those that always interpolate (DINOv2) have no such argument.
    if trained != (size, size) and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        extra["interpolate_pos_encoding"] = True
    config.image_size = size
    out_dir = _prepare_dir(out_dir)
    (out_dir / IMAGES_DIR).mkdir(exist_ok=True)
    param = next(model.parameters())
    writers = [LayerWriter(out_dir, layer, dtype) for layer in range(facts.num_layers)]
    sink = _BatchSink(writers, dtype)

    def batches() -> Iterator[tuple]:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            fitted = [proc.fit(it) for it in batch]
            for it, pixels in zip(batch, fitted):
                _save_png(pixels, out_dir / image_file(it.image_id))
            x = torch.from_numpy(proc.normalize(fitted)).to(param.device, dtype=param.dtype)
            yield [int(it.image_id) for it in batch], None, None, {"pixel_values": x, **extra}, len(batch)

    _run_batches(loaded, writers, sink, batches(), len(items), "img", progress)
    if len(sink.seq_lens) != 1:
        raise RuntimeError(f"{loaded.source}: sequence length changed between images: {sorted(sink.seq_lens)}")
    T = sink.seq_lens.pop()
    prefix = T - grid[0] * grid[1]
    if prefix < 0:
        raise RuntimeError(f"{loaded.source}: {T} tokens per image, fewer than the {grid[0]}x{grid[1]} patch grid")
    facts = dataclasses.replace(facts, patch_grid=grid, num_prefix_tokens=prefix, patch_size=(ph, pw),
                                image_size=(size, size))
    if weights := sink.qk_weights(facts):
        write_qk_weights(out_dir, weights, dtype)
    tokens = image_token_table(ids, grid, prefix)
    write_table_atomic(tokens.to_arrow(), out_dir / TOKENS_FILE)
    images = [{"image_id": int(it.image_id), "name": it.name, "file": image_file(it.image_id),
               "license": it.license, "attribution": it.attribution} for it in items]
    lic, att = dataset_license(items)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "facts": facts.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_tokens": len(tokens), "num_sentences": len(items), "images": images,
        "dataset_license": lic, "dataset_attribution": att, "preprocessor": proc.to_json(),
    }, out_dir / META_FILE)
    return CaptureResult(facts, tokens, out_dir, dtype, images)
