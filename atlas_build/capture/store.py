"""On-disk layout of a capture (Arrow IPC files, written atomically) and its readers.

```
<out_dir>/capture.json       format version, facts, dtype, counts — written last: its presence marks a finished capture
<out_dir>/tokens.arrow       one row per token (explicit token_id), see `TokenTable`
<out_dir>/L<ll>.arrow        per layer, one row per token: q [H*d], k [KV*d], v [KV*dv] fixed-size lists
<out_dir>/A<ll>.arrow        per layer, one row per sentence: sentence_id, n, attention [H*n*n] (the model's own)
<out_dir>/weights.npz        optional: per layer W_Q [H, d, D] / W_K [KV, d, D] of the q/k projections (``q<l>``, ``k<l>``)
<out_dir>/images/<id>.png    image captures: the fitted square picture each image's patches come from
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .facts import ModelFacts

FORMAT_VERSION = 1
META_FILE = "capture.json"
TOKENS_FILE = "tokens.arrow"
WEIGHTS_FILE = "weights.npz"
IMAGES_DIR = "images"
NP_DTYPES = {"float16": np.float16, "float32": np.float32}
PA_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}


def layer_file(layer: int) -> str:
    return f"L{layer:02d}.arrow"


def attn_file(layer: int) -> str:
    return f"A{layer:02d}.arrow"


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@dataclass
class TokenTable:
    """One row per captured token; `token_id` is the row number (0..N-1)."""

    token_id: np.ndarray  # uint32
    sentence_id: np.ndarray  # uint32
    position: np.ndarray  # uint16
    sentence_length: np.ndarray  # uint16
    vocab_id: np.ndarray  # int64
    special: np.ndarray  # bool
    text: list[str] = field(default_factory=list)
    # Image models only: the patch's row/column in the image's grid (int16), -1 for CLS/register tokens.
    patch_row: np.ndarray | None = None
    patch_col: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.token_id.shape[0])

    @property
    def is_image(self) -> bool:
        return self.patch_row is not None

    def to_arrow(self) -> pa.Table:
        cols = {
            "token_id": pa.array(self.token_id, pa.uint32()),
            "sentence_id": pa.array(self.sentence_id, pa.uint32()),
            "position": pa.array(self.position, pa.uint16()),
            "sentence_length": pa.array(self.sentence_length, pa.uint16()),
            "vocab_id": pa.array(self.vocab_id, pa.int64()),
            "special": pa.array(self.special, pa.bool_()),
            "text": pa.array(self.text, pa.string()),
        }
        if self.patch_row is not None and self.patch_col is not None:
            cols["patch_row"] = pa.array(np.asarray(self.patch_row, np.int16), pa.int16())
            cols["patch_col"] = pa.array(np.asarray(self.patch_col, np.int16), pa.int16())
        return pa.table(cols)

    @classmethod
    def from_arrow(cls, t: pa.Table) -> TokenTable:
        col = lambda name, dt: t.column(name).to_numpy().astype(dt, copy=False)  # noqa: E731
        patch = "patch_row" in t.column_names and "patch_col" in t.column_names
        return cls(col("token_id", np.uint32), col("sentence_id", np.uint32), col("position", np.uint16),
                   col("sentence_length", np.uint16), col("vocab_id", np.int64), col("special", np.bool_),
                   t.column("text").to_pylist(),
                   col("patch_row", np.int16) if patch else None, col("patch_col", np.int16) if patch else None)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    tmp = tmp_path(path)
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    os.replace(tmp, path)


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    tmp = tmp_path(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _fixed(values: np.ndarray, dtype: str) -> pa.FixedSizeListArray:
    """[N, ...] array → FixedSizeList array of the flattened rows in the storage dtype."""
    n = values.shape[0]
    width = int(np.prod(values.shape[1:]))
    flat = np.ascontiguousarray(values, dtype=NP_DTYPES[dtype]).reshape(n * width)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, PA_DTYPES[dtype]), width)


class LayerWriter:
    """Appends per-batch q/k/v rows and per-sentence attention of one layer to temp files; `commit` renames them."""

    def __init__(self, out_dir: Path, layer: int, dtype: str):
        self.dtype = dtype
        self.paths = (out_dir / layer_file(layer), out_dir / attn_file(layer))
        self._qkv: ipc.RecordBatchFileWriter | None = None
        self._att: ipc.RecordBatchFileWriter | None = None
        self._sinks: list[pa.NativeFile] = []

    def _open(self, path: Path, schema: pa.Schema) -> ipc.RecordBatchFileWriter:
        sink = pa.OSFile(str(tmp_path(path)), "wb")
        self._sinks.append(sink)
        return ipc.new_file(sink, schema)

    def write(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, sentence_ids: list[int], lengths: list[int],
              attention: np.ndarray) -> None:
        """q [n, H, d], k/v [n, KV, d] for the batch's real tokens; attention: the sentences' [H, n_s, n_s]
        probabilities flattened and concatenated in ``sentence_ids`` order."""
        qkv = pa.record_batch([_fixed(q, self.dtype), _fixed(k, self.dtype), _fixed(v, self.dtype)],
                              names=["q", "k", "v"])
        heads = q.shape[1]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        offsets[1:] = np.cumsum([heads * n * n for n in lengths])
        values = pa.array(np.ascontiguousarray(attention, NP_DTYPES[self.dtype]).ravel(), PA_DTYPES[self.dtype])
        att = pa.record_batch([
            pa.array(sentence_ids, pa.uint32()),
            pa.array(lengths, pa.uint16()),
            pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values),
        ], names=["sentence_id", "n", "attention"])
        if self._qkv is None:
            self._qkv = self._open(self.paths[0], qkv.schema)
            self._att = self._open(self.paths[1], att.schema)
        self._qkv.write_batch(qkv)
        assert self._att is not None
        self._att.write_batch(att)

    def close(self) -> None:
        for w in (self._qkv, self._att):
            if w is not None:
                w.close()
        for s in self._sinks:
            s.close()
        self._qkv = self._att = None
        self._sinks = []

    def commit(self) -> None:
        self.close()
        for p in self.paths:
            os.replace(tmp_path(p), p)


def _read_ipc(path: Path) -> ipc.RecordBatchFileReader:
    return ipc.open_file(pa.memory_map(str(path), "r"))


def _column_array(table: pa.Table, name: str, width: int) -> np.ndarray:
    col = table.column(name)
    chunks = [c.values.to_numpy(zero_copy_only=False) for c in col.chunks]
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return flat.astype(np.float32).reshape(-1, width)


@dataclass
class LayerCapture:
    """Captured vectors of one layer (float32) and lazy access to its attention probabilities."""

    layer: int
    q: np.ndarray  # [N, num_heads, head_dim]: post-RoPE, exactly what enters the dot product
    k: np.ndarray  # [N, num_kv_heads, head_dim]
    v: np.ndarray  # [N, num_kv_heads, v_dim]
    attn_path: Path | None = None
    _index: dict[int, tuple[int, int]] | None = field(default=None, repr=False)
    _reader: ipc.RecordBatchFileReader | None = field(default=None, repr=False)

    def _ensure_index(self) -> ipc.RecordBatchFileReader:
        if self._reader is None:
            if self.attn_path is None:
                raise ValueError("this LayerCapture has no attention file")
            self._reader = _read_ipc(self.attn_path)
            self._index = {}
            for b in range(self._reader.num_record_batches):
                ids = self._reader.get_batch(b).column(0).to_numpy()
                for r, sid in enumerate(ids.tolist()):
                    self._index[sid] = (b, r)
        return self._reader

    def attention(self, sentence_id: int) -> np.ndarray:
        """[num_heads, n, n] float32: the model's own attention probabilities for one sentence."""
        reader = self._ensure_index()
        assert self._index is not None
        if sentence_id not in self._index:
            raise KeyError(f"sentence {sentence_id} is not in this capture")
        b, r = self._index[sentence_id]
        batch = reader.get_batch(b)
        n = int(batch.column(1)[r].as_py())
        flat = batch.column(2)[r].values.to_numpy(zero_copy_only=False)
        return flat.astype(np.float32).reshape(-1, n, n)


@dataclass
class CaptureResult:
    facts: ModelFacts
    tokens: TokenTable
    directory: Path
    dtype: str = "float16"
    # Image captures: one dict per image (image_id, name, file, license, attribution); ``file`` is relative to
    # ``directory`` (the fitted square PNG the model saw).
    images: list[dict[str, Any]] = field(default_factory=list)

    def layer(self, layer: int) -> LayerCapture:
        return read_layer(self.directory, layer)

    def qk_weights(self, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(W_Q [H, d, D], W_K [KV, d, D]) of one layer's projections, when the capture recorded them."""
        return read_qk_weights(self.directory, layer)


def read_meta(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} holds no finished capture (no {META_FILE})")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: capture format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    return meta


def read_layer(out_dir: Path, layer: int) -> LayerCapture:
    """Load one layer's q/k/v as float32 arrays (attention is read lazily per sentence)."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    facts = ModelFacts.from_json(meta["facts"])
    if not 0 <= layer < facts.num_layers:
        raise IndexError(f"layer {layer} out of range 0..{facts.num_layers - 1}")
    table = _read_ipc(out_dir / layer_file(layer)).read_all()
    H, KV, d = facts.num_heads, facts.num_kv_heads, facts.head_dim
    q = _column_array(table, "q", H * d).reshape(-1, H, d)
    k = _column_array(table, "k", KV * d).reshape(-1, KV, d)
    vw = table.schema.field("v").type.list_size
    v = _column_array(table, "v", vw).reshape(-1, KV, vw // KV)
    return LayerCapture(layer, q, k, v, out_dir / attn_file(layer))


def load_capture(out_dir: Path) -> CaptureResult:
    """Re-open a finished capture."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    tokens = TokenTable.from_arrow(_read_ipc(out_dir / TOKENS_FILE).read_all())
    return CaptureResult(ModelFacts.from_json(meta["facts"]), tokens, out_dir, meta.get("dtype", "float16"),
                         list(meta.get("images", [])))


def write_qk_weights(out_dir: Path, weights: dict[int, tuple[np.ndarray, np.ndarray]], dtype: str) -> None:
    """Store per-layer (W_Q [H, d, D], W_K [KV, d, D]) in ``weights.npz`` (keys ``q<l>``/``k<l>``), atomically."""
    arrays = {}
    for layer, (wq, wk) in sorted(weights.items()):
        arrays[f"q{layer}"] = np.asarray(wq, NP_DTYPES[dtype])
        arrays[f"k{layer}"] = np.asarray(wk, NP_DTYPES[dtype])
    path = Path(out_dir) / WEIGHTS_FILE
    tmp = tmp_path(path)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def read_qk_weights(out_dir: Path, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
    path = Path(out_dir) / WEIGHTS_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        if f"q{layer}" not in z.files or f"k{layer}" not in z.files:
            return None
        return z[f"q{layer}"].astype(np.float32), z[f"k{layer}"].astype(np.float32)
