"""On-disk layout of a capture (Arrow IPC files, written atomically) and its readers.

```
<out_dir>/capture.json       format version, facts, dtype, counts, plan digest — written last: marks a finished capture
<out_dir>/plan.json          what the batches below belong to (model, selection, batch size, dtype); see `batches`
<out_dir>/tokens.arrow       one row per token (explicit token_id, readable text and raw piece), see `TokenTable`
<out_dir>/batches/<bbbbbb>/  one directory per forward batch, renamed into place only once complete:
    qkv.arrow                per layer (record batch = layer), one row per token: q [H*d], k [KV*d], v [KV*dv]
    attn.arrow               per layer, one row per sentence: sentence_id, n, attention [H*n*n] (the model's own)
<out_dir>/weights.npz        optional: per layer W_Q [H, d, D] / W_K [KV, d, D] of the q/k projections (q<l>, k<l>)
<out_dir>/images/<id>.png    image captures: the fitted square picture each image's patches come from
```
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .facts import ModelFacts
from .staged import StagedBatch

FORMAT_VERSION = 3
META_FILE = "capture.json"
PLAN_FILE = "plan.json"
TOKENS_FILE = "tokens.arrow"
WEIGHTS_FILE = "weights.npz"
IMAGES_DIR = "images"
BATCHES_DIR = "batches"
QKV_FILE = "qkv.arrow"
ATTN_FILE = "attn.arrow"
# Fixed member timestamp of weights.npz, so identical weights give identical bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
NP_DTYPES = {"float16": np.float16, "float32": np.float32}
PA_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}


def batch_dir(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / BATCHES_DIR / f"{index:06d}"


def committed_batches(out_dir: Path) -> set[int]:
    """Indices of the batch directories that were renamed into place (complete)."""
    base = Path(out_dir) / BATCHES_DIR
    return {int(d.name) for d in base.iterdir() if d.name.isdigit()} if base.is_dir() else set()


def plan_digest(plan: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


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
    # What each token stands for in its sentence (see `token_text`), and the tokenizer's raw piece.
    text: list[str] = field(default_factory=list)
    piece: list[str] = field(default_factory=list)
    # Image models only: the patch's row/column in the image's grid (int16), -1 for CLS/register tokens.
    patch_row: np.ndarray | None = None
    patch_col: np.ndarray | None = None
    #: Cross-attention blocks only (built from two tables, never stored): 0 = query-side token, 1 = key-side token.
    side: np.ndarray | None = None

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
            "piece": pa.array(self.piece, pa.string()),
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
                   t.column("text").to_pylist(), t.column("piece").to_pylist(),
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


def _flat(values: np.ndarray, dtype: str) -> pa.Array:
    """Any array → one flat Arrow array of its values in the storage dtype."""
    return pa.array(np.ascontiguousarray(values, NP_DTYPES[dtype]).ravel(), PA_DTYPES[dtype])


def _fixed(values: np.ndarray, dtype: str) -> pa.FixedSizeListArray:
    """[N, ...] array → FixedSizeList array of the flattened rows in the storage dtype."""
    return pa.FixedSizeListArray.from_arrays(_flat(values, dtype), int(np.prod(values.shape[1:])))


class BatchWriter(StagedBatch):
    """Writes one forward batch into a temporary directory: per layer, in layer order, one record batch of q/k/v rows
    (``qkv.arrow``) and one of attention (``attn.arrow``). `commit` renames it to ``batches/<index>``."""

    def __init__(self, out_dir: Path, index: int, dtype: str):
        super().__init__(batch_dir(out_dir, index), dtype)

    def write(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, sentence_ids: list[int], lengths: list[int],
              attention: np.ndarray) -> None:
        """Append the next layer. q [n, H, d], k/v [n, KV, d] for the batch's real tokens; attention: the sentences'
        [H, n_s, n_s] probabilities flattened and concatenated in ``sentence_ids`` order."""
        heads = q.shape[1]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        offsets[1:] = np.cumsum([heads * n * n for n in lengths])
        self._write(QKV_FILE, pa.record_batch([_fixed(q, self.dtype), _fixed(k, self.dtype), _fixed(v, self.dtype)],
                                              names=["q", "k", "v"]))
        self._write(ATTN_FILE, pa.record_batch([
            pa.array(sentence_ids, pa.uint32()),
            pa.array(lengths, pa.uint16()),
            pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), _flat(attention, self.dtype)),
        ], names=["sentence_id", "n", "attention"]))


def _read_ipc(path: Path) -> ipc.RecordBatchFileReader:
    return ipc.open_file(pa.memory_map(str(path), "r"))


def _rows(batches: list[pa.RecordBatch], name: str, width: int) -> np.ndarray:
    """One fixed-size-list column of several record batches as one float32 [N, width] array (a single copy)."""
    out = np.empty((sum(b.num_rows for b in batches), width), np.float32)
    row = 0
    for b in batches:
        out[row:row + b.num_rows] = b.column(name).values.to_numpy(zero_copy_only=False).reshape(b.num_rows, width)
        row += b.num_rows
    return out


@dataclass
class LayerCapture:
    """One layer of a capture: q/k/v as float32 arrays, each read from disk on first use, and lazy access to the
    attention probabilities per sentence (a reader of attention alone never holds the vectors)."""

    layer: int
    qkv_paths: tuple[Path, ...]
    attn_paths: tuple[Path, ...]
    widths: tuple[int, int]  # (num_heads, num_kv_heads)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _index: dict[int, tuple[int, int]] | None = field(default=None, repr=False)
    _batches: list[pa.RecordBatch] = field(default_factory=list, repr=False)

    def _vectors(self, name: str, heads: int) -> np.ndarray:
        if name not in self._arrays:
            batches = [_read_ipc(p).get_batch(self.layer) for p in self.qkv_paths]
            width = batches[0].schema.field(name).type.list_size
            self._arrays[name] = _rows(batches, name, width).reshape(-1, heads, width // heads)
        return self._arrays[name]

    @property
    def q(self) -> np.ndarray:
        """[N, num_heads, head_dim]: post-RoPE, exactly what enters the dot product."""
        return self._vectors("q", self.widths[0])

    @property
    def k(self) -> np.ndarray:
        """[N, num_kv_heads, head_dim]."""
        return self._vectors("k", self.widths[1])

    @property
    def v(self) -> np.ndarray:
        """[N, num_kv_heads, v_dim]."""
        return self._vectors("v", self.widths[1])

    def _ensure_index(self) -> dict[int, tuple[int, int]]:
        if self._index is None:
            if not self.attn_paths:
                raise ValueError("this LayerCapture has no attention files")
            self._batches = [_read_ipc(p).get_batch(self.layer) for p in self.attn_paths]
            self._index = {sid: (f, r) for f, b in enumerate(self._batches)
                           for r, sid in enumerate(b.column(0).to_numpy().tolist())}
        return self._index

    def attention(self, sentence_id: int) -> np.ndarray:
        """[num_heads, n, n] float32: the model's own attention probabilities for one sentence."""
        index = self._ensure_index()
        if sentence_id not in index:
            raise KeyError(f"sentence {sentence_id} is not in this capture")
        f, r = index[sentence_id]
        batch = self._batches[f]
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
    # Forward batches of the capture, and how many of them a resumed capture took from an interrupted run.
    batches_total: int = 0
    batches_reused: int = 0

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


def batch_files(out_dir: Path, num_batches: int, name: str) -> list[Path]:
    return [batch_dir(out_dir, b) / name for b in range(num_batches)]


def read_layer(out_dir: Path, layer: int) -> LayerCapture:
    """One layer of a finished capture: q/k/v (float32) are read on first use, attention lazily per sentence."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    facts = ModelFacts.from_json(meta["facts"])
    if not 0 <= layer < facts.num_layers:
        raise IndexError(f"layer {layer} out of range 0..{facts.num_layers - 1}")
    n = meta["num_batches"]
    return LayerCapture(layer, tuple(batch_files(out_dir, n, QKV_FILE)), tuple(batch_files(out_dir, n, ATTN_FILE)),
                        (facts.num_heads, facts.num_kv_heads))


def sequence_lengths(out_dir: Path, num_batches: int) -> set[int]:
    """The distinct sequence lengths of a capture's batches (from layer 0's attention rows)."""
    return {int(n) for p in batch_files(out_dir, num_batches, ATTN_FILE)
            for n in _read_ipc(p).get_batch(0).column(1).to_numpy().tolist()}


def load_capture(out_dir: Path) -> CaptureResult:
    """Re-open a finished capture."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    tokens = TokenTable.from_arrow(_read_ipc(out_dir / TOKENS_FILE).read_all())
    n = int(meta["num_batches"])
    return CaptureResult(ModelFacts.from_json(meta["facts"]), tokens, out_dir, meta.get("dtype", "float16"),
                         list(meta.get("images", [])), batches_total=n, batches_reused=n)


def write_qk_weights(out_dir: Path, weights: dict[int, tuple[np.ndarray, np.ndarray]], dtype: str) -> None:
    """Store per-layer (W_Q [H, d, D], W_K [KV, d, D]) in ``weights.npz`` (keys ``q<l>``/``k<l>``), atomically and
    byte-reproducibly (fixed member timestamps)."""
    path = Path(out_dir) / WEIGHTS_FILE
    tmp = tmp_path(path)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for layer, (wq, wk) in sorted(weights.items()):
            for key, w in ((f"q{layer}", wq), (f"k{layer}", wk)):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(w, NP_DTYPES[dtype]), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH), buf.getvalue())
    os.replace(tmp, path)


def read_qk_weights(out_dir: Path, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
    path = Path(out_dir) / WEIGHTS_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        if f"q{layer}" not in z.files or f"k{layer}" not in z.files:
            return None
        return z[f"q{layer}"].astype(np.float32), z[f"k{layer}"].astype(np.float32)
