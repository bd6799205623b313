"""Per-input exports of one model: every input's attention, one file per layer (the model view, and the head
pages' attention lines and sentence view), and the featured inputs' query and key vectors (the neuron view), read
from the capture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..capture import CaptureResult
from ..capture.encdec_blocks import BlockCapture
from ..export.inputs import INPUT_FILES, input_path, write_input_attention, write_vectors
from ..featured import featured_ids
from ..manifest import Manifest, ModelSpec


@dataclass(frozen=True)
class InputRecord:
    """One input as the site lists it: id, text (a sentence, or an image's name), token count, featured or not."""

    input_id: int
    text: str
    length: int
    featured: bool


def input_texts(cap: CaptureResult) -> dict[int, str]:
    """Each input's text: its non-special tokens' readable texts in position order, the image's name, or an
    encoder–decoder pair's source → target."""
    if isinstance(cap, BlockCapture):
        return dict(cap.texts)
    if cap.tokens.is_image:
        return {int(im["image_id"]): str(im["name"]) for im in cap.images}
    tok = cap.tokens
    parts: dict[int, list[tuple[int, str]]] = {}
    for text, special, sid, pos in zip(tok.text, tok.special, tok.sentence_id, tok.position):
        if not special:
            parts.setdefault(int(sid), []).append((int(pos), text))
    return {sid: "".join(t for _, t in sorted(p)).strip() for sid, p in parts.items()}


def export_inputs(manifest: Manifest, spec: ModelSpec, cap: CaptureResult, data_dir: Path,
                  blocks: Sequence[tuple[int, int, int]],
                  token_ids: Mapping[int, np.ndarray]) -> tuple[dict, list[InputRecord]]:
    """Write ``inputs/`` and ``vectors/``; returns manifest.json's ``inputs`` section and the inputs' records.

    `blocks`: (input id, first token id, length) of every captured input; `token_ids`: input id → its token ids
    in position order (rows of the capture's vectors)."""
    facts = cap.facts
    featured = featured_ids(manifest, spec, [sid for sid, _, _ in blocks], manifest.build.seed)
    layers = [cap.layer(layer) for layer in range(facts.num_layers)]
    heads = range(facts.num_heads)
    for sid, first, _ in blocks:
        for layer, lc in enumerate(layers):
            attn = lc.attention(sid)
            write_input_attention(data_dir / input_path("attention", input=sid, layer=layer), sid, first,
                                  [(layer, h, facts.kv_head_of_query[h], attn[h]) for h in heads])
    # The neuron view lives in the sentence panel: vectors of text models only.
    with_vectors = featured if not cap.tokens.is_image else []
    firsts = {sid: first for sid, first, _ in blocks}
    for layer in range(facts.num_layers) if with_vectors else ():
        lc = cap.layer(layer)  # a fresh reader per layer: its q/k arrays are freed after it
        for role, vectors, count, key in (("query", lc.q, facts.num_heads, "head"),
                                          ("key", lc.k, facts.num_kv_heads, "kv_head")):
            for index in range(count):
                rows = [(sid, firsts[sid], vectors[token_ids[sid], index]) for sid in with_vectors]
                write_vectors(data_dir / input_path(role, layer=layer, **{key: index}), layer, role, index, rows)
    texts = input_texts(cap)
    records = [InputRecord(sid, texts.get(sid, ""), n, sid in featured) for sid, _, n in blocks]
    section = {"count": len(blocks), "featured": featured, "vectors": with_vectors, "files": dict(INPUT_FILES)}
    return section, records
