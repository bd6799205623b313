"""Stream sentences (or images) through a loaded model and write what its attention sees, layer by layer, to disk."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..datasets import Sentence
from ..datasets.images import dataset_license, patch_columns, tokens_per_image
from ..datasets.pixels import ImageItem, ImagePreprocessor
from ..errors import InputError
from .batches import Batch, is_finished, resume, run_batches
from .facts import text_config
from .sources import LoadedModel
from .store import (FORMAT_VERSION, IMAGES_DIR, META_FILE, TOKENS_FILE, CaptureResult, TokenTable, load_capture,
                    plan_digest, sequence_lengths, tmp_path, write_json_atomic, write_qk_weights, write_table_atomic)
from .token_text import readable_texts

TOKENIZE_CHUNK = 256


@dataclass(frozen=True)
class Encoded:
    sentence_id: int
    ids: tuple[int, ...]
    text: str = ""
    # Character span of each token in ``text`` (fast tokenizers), None when the tokenizer gives none.
    offsets: tuple[tuple[int, int], ...] | None = None


def _encode(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[list[int]], list | None]:
    """Input ids and, when the tokenizer can give them, character offsets of every token."""
    if getattr(tokenizer, "is_fast", False):
        try:
            enc = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
            return enc["input_ids"], enc["offset_mapping"]
        except (NotImplementedError, ValueError, KeyError):
            pass
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"], None


def select_sentences(tokenizer: Any, sentences: Sequence[Sentence], token_budget: int,
                     max_length: int) -> list[Encoded]:
    """Tokenise sentences in order (default special tokens, truncated to max_length) until the budget is reached.

    Sentences with no tokens (or only special tokens) are skipped; the first sentence that would overflow the budget
    ends the selection.
    """
    out: list[Encoded] = []
    total = 0
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
    for start in range(0, len(sentences), TOKENIZE_CHUNK):
        chunk = sentences[start:start + TOKENIZE_CHUNK]
        enc, spans = _encode(tokenizer, [s.text for s in chunk], max_length)
        for j, (s, ids) in enumerate(zip(chunk, enc)):
            if not ids or all(i in special for i in ids):
                continue
            if total + len(ids) > token_budget:
                return out
            offsets = None if spans is None else tuple((int(a), int(b)) for a, b in spans[j])
            out.append(Encoded(s.sentence_id, tuple(int(i) for i in ids), s.text, offsets))
            total += len(ids)
            if total == token_budget:
                return out
    return out


def _nothing_selected(tokenizer: Any, sentences: Sequence[Sentence], token_budget: int, max_length: int,
                      source: str) -> str:
    """Why no sentence was selected, naming the manifest key to change."""
    added = len(tokenizer("", truncation=False)["input_ids"]) if sentences else 0
    if max_length <= added:
        return (f"{source}: a sequence length of {max_length} tokens (models[].max_tokens, capped by the model's "
                f"position table) leaves no room for text: the tokenizer adds {added} special tokens to every "
                "sentence; raise max_tokens")
    return (f"{source}: the first sentence needs more tokens than the dataset's token budget of {token_budget} "
            "(datasets[].max_tokens); raise the budget")


def pad_batch(batch: Sequence[Encoded], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask (positions of real tokens stay 0..n-1)."""
    T = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        mask[b, :len(e.ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def token_table(tokenizer: Any, selected: Sequence[Encoded], special_ids: Sequence[int]) -> TokenTable:
    """One row per selected token: its raw tokenizer piece and its readable text (see `token_text`)."""
    lengths = [len(e.ids) for e in selected]
    N = sum(lengths)
    vocab = np.fromiter((i for e in selected for i in e.ids), np.int64, N)
    specials = {int(i) for i in special_ids}
    text: list[str] = []
    piece: list[str] = []
    for e in selected:
        pieces = [str(t) for t in tokenizer.convert_ids_to_tokens(list(e.ids))]
        # A special id with a real span in the sentence (e.g. [UNK]) stands for that text.
        flags = [i in specials and (e.offsets is None or e.offsets[k][0] == e.offsets[k][1])
                 for k, i in enumerate(e.ids)]
        piece.extend(pieces)
        text.extend(readable_texts(tokenizer, e.text, e.ids, pieces, flags, e.offsets))
    return TokenTable(
        token_id=np.arange(N, dtype=np.uint32),
        sentence_id=np.repeat(np.array([e.sentence_id for e in selected], np.uint32), lengths),
        position=np.concatenate([np.arange(n, dtype=np.uint16) for n in lengths]) if N else np.zeros(0, np.uint16),
        sentence_length=np.repeat(np.array(lengths, np.uint16), lengths),
        vocab_id=vocab,
        special=np.isin(vocab, np.array(list(special_ids), np.int64)),
        text=text,
        piece=piece,
    )


def _digest(chunks: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()[:16]


def _check_dtype(dtype: str) -> None:
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")


def capture(loaded: LoadedModel, sentences: Sequence[Sentence], out_dir: Path, *, token_budget: int,
            max_length: int, batch_size: int = 16, dtype: str = "float16", progress: bool = False) -> CaptureResult:
    """Capture q, k, v and attention of every layer for sentences in order until ``token_budget`` tokens.

    Each forward batch is written to disk as it completes (memory stays bounded); a capture interrupted in the same
    ``out_dir`` resumes from its committed batches (see `batches`). ``capture.json`` is written last.
    """
    _check_dtype(dtype)
    facts, tok = loaded.facts, loaded.tokenizer
    if facts.input_kind != "text" or tok is None:
        raise InputError(f"{loaded.source}: capture() takes text; this model reads {facts.input_kind} "
                         "(use capture_images)")
    out_dir = Path(out_dir)
    # Longer inputs would index past the position table (the tokenizer knows offsets such as RoBERTa's).
    for limit in (getattr(text_config(loaded.model.config), "max_position_embeddings", None),
                  getattr(tok, "model_max_length", None)):
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            max_length = min(max_length, limit)
    selected = select_sentences(tok, sentences, token_budget, max_length)
    if not selected:
        raise InputError(_nothing_selected(tok, sentences, token_budget, max_length, loaded.source))
    chunks = [selected[i:i + batch_size] for i in range(0, len(selected), batch_size)]
    batches = [Batch(tuple(e.sentence_id for e in c), tuple(len(e.ids) for e in c), sum(len(e.ids) for e in c))
               for c in chunks]
    n_tokens = sum(b.count for b in batches)
    plan = {"kind": "text", "source": loaded.source, "revision": loaded.revision, "facts": facts.to_json(),
            "dtype": dtype, "batch_size": batch_size, "token_budget": token_budget, "max_length": max_length,
            "selection": _digest([np.array([e.sentence_id, *e.ids], np.int64).tobytes() for e in selected])}
    digest = plan_digest(plan)
    if is_finished(out_dir, digest):
        return load_capture(out_dir)
    done = resume(out_dir, plan)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    device = next(loaded.model.parameters()).device

    def inputs_of(i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = pad_batch(chunks[i], pad_id, device)
        return inputs["attention_mask"], inputs

    sink = run_batches(loaded, out_dir, batches, inputs_of, dtype, done, "tok", progress)
    if weights := sink.qk_weights(facts):
        write_qk_weights(out_dir, weights, dtype)
    tokens = token_table(tok, selected, facts.special_token_ids)
    write_table_atomic(tokens.to_arrow(), out_dir / TOKENS_FILE)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "facts": facts.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_tokens": n_tokens, "num_sentences": len(selected),
        "token_budget": token_budget, "max_length": max_length, "plan": digest, "num_batches": len(batches),
    }, out_dir / META_FILE)
    return CaptureResult(facts, tokens, out_dir, dtype, batches_total=len(batches), batches_reused=len(done))


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
    proc = loaded.preprocessor
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
        piece=one * len(image_ids),
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
    _check_dtype(dtype)
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
    out_dir = Path(out_dir)
    images = [{"image_id": int(it.image_id), "name": it.name, "file": image_file(it.image_id),
               "license": it.license, "attribution": it.attribution} for it in items]
    batches = [Batch(tuple(ids[i:i + batch_size]), None, len(ids[i:i + batch_size]))
               for i in range(0, len(ids), batch_size)]
    plan = {"kind": "image", "source": loaded.source, "revision": loaded.revision, "facts": facts.to_json(),
            "dtype": dtype, "batch_size": batch_size, "preprocessor": proc.to_json(), "extra": sorted(extra),
            "images": images, "pixels": _digest([np.ascontiguousarray(it.pixels).tobytes() for it in items])}
    digest = plan_digest(plan)
    if is_finished(out_dir, digest):
        return load_capture(out_dir)
    done = resume(out_dir, plan)
    (out_dir / IMAGES_DIR).mkdir(exist_ok=True)
    param = next(model.parameters())

    def fitted(batch: Sequence[ImageItem]) -> list[np.ndarray]:
        """The pictures the model sees; each is saved as images/<id>.png before its batch can be committed."""
        out = [proc.fit(it) for it in batch]
        for it, pixels in zip(batch, out):
            _save_png(pixels, out_dir / image_file(it.image_id))
        return out

    def inputs_of(i: int) -> tuple[None, dict[str, Any]]:
        x = proc.normalize(fitted(items[i * batch_size:(i + 1) * batch_size]))
        return None, {"pixel_values": torch.from_numpy(x).to(param.device, dtype=param.dtype), **extra}

    sink = run_batches(loaded, out_dir, batches, inputs_of, dtype, done, "img", progress)
    fitted([it for it in items if not (out_dir / image_file(it.image_id)).exists()])
    lengths = sequence_lengths(out_dir, len(batches))
    if len(lengths) != 1:
        raise RuntimeError(f"{loaded.source}: sequence length changed between images: {sorted(lengths)}")
    T = lengths.pop()
    prefix = T - grid[0] * grid[1]
    if prefix < 0:
        raise RuntimeError(f"{loaded.source}: {T} tokens per image, fewer than the {grid[0]}x{grid[1]} patch grid")
    facts = dataclasses.replace(facts, patch_grid=grid, num_prefix_tokens=prefix, patch_size=(ph, pw),
                                image_size=(size, size))
    if weights := sink.qk_weights(facts):
        write_qk_weights(out_dir, weights, dtype)
    tokens = image_token_table(ids, grid, prefix)
    write_table_atomic(tokens.to_arrow(), out_dir / TOKENS_FILE)
    lic, att = dataset_license(items)
    write_json_atomic({
        "format_version": FORMAT_VERSION, "facts": facts.to_json(), "dtype": dtype, "source": loaded.source,
        "revision": loaded.revision, "num_tokens": len(tokens), "num_sentences": len(items), "images": images,
        "dataset_license": lic, "dataset_attribution": att, "preprocessor": proc.to_json(), "plan": digest,
        "num_batches": len(batches),
    }, out_dir / META_FILE)
    return CaptureResult(facts, tokens, out_dir, dtype, images, batches_total=len(batches), batches_reused=len(done))
