"""On-disk layout of an encoder–decoder capture (Arrow IPC, written atomically, resumable like `store`) and readers.

```
<out_dir>/capture.json            kind "encdec", format version, `EncDecFacts`, counts, generation settings, plan
<out_dir>/plan.json               what the batches belong to (see `batches.resume`)
<out_dir>/pairs.arrow             one row per pair: pair_id, source (text, or the clip's name), target, generated,
                                  n_encoder, n_decoder, seconds (audio clips; 0 for text)
<out_dir>/tokens/encoder.arrow    one row per encoder token (`store.TokenTable`; sentence_id = pair_id); audio: one
                                  row per encoder position, text "<start> s", piece "frame <p>"
<out_dir>/tokens/decoder.arrow    one row per decoder token (the start token, then the target's tokens)
<out_dir>/batches/<bbbbbb>/       one directory per forward batch, renamed into place once complete; per block
    <block>.q.arrow               per layer (record batch = layer): token_id of the query side, q [H*d]
    <block>.kv.arrow              per layer: token_id of the key side, k [KV*d], v [KV*dv]
    <block>.attn.arrow            per layer, one row per pair: pair_id, n_q, n_k, attention [H*n_q*n_k] (the model's
                                  own); blocks with additive score terms also store them: bias [H*n_q*n_k]
```
Blocks are ``encoder``, ``decoder`` and ``cross`` (queries: decoder tokens, keys: encoder tokens of the same pair).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .encdec import BLOCKS, KEY_SIDE, QUERY_SIDE, EncDecFacts
from .staged import StagedBatch
from .store import FORMAT_VERSION, META_FILE, TokenTable, _fixed, _flat, _read_ipc, _rows, batch_dir, write_table_atomic

KIND = "encdec"
PAIRS_FILE = "pairs.arrow"
TOKENS_DIR = "tokens"
SIDES = ("encoder", "decoder")


def tokens_file(out_dir: Path, side: str) -> Path:
    return Path(out_dir) / TOKENS_DIR / f"{side}.arrow"


class BlockBatchWriter(StagedBatch):
    """Writes one forward batch of every block into a temporary directory; `commit` renames it into place."""

    def __init__(self, out_dir: Path, index: int, dtype: str):
        super().__init__(batch_dir(out_dir, index), dtype)

    def write(self, block: str, q_ids: np.ndarray, q: np.ndarray, k_ids: np.ndarray, k: np.ndarray, v: np.ndarray,
              pair_ids: list[int], n_q: list[int], n_k: list[int], attention: np.ndarray,
              bias: np.ndarray | None) -> None:
        """Append the block's next layer: q [n_q rows, H, d], k/v [n_k rows, KV, d] with their sides' token ids;
        attention (and bias) [H, n_q, n_k] per pair, flattened and concatenated in ``pair_ids`` order."""
        heads = q.shape[1]
        self._write(f"{block}.q.arrow", pa.record_batch(
            [pa.array(q_ids, pa.uint32()), _fixed(q, self.dtype)], names=["token_id", "q"]))
        self._write(f"{block}.kv.arrow", pa.record_batch(
            [pa.array(k_ids, pa.uint32()), _fixed(k, self.dtype), _fixed(v, self.dtype)], names=["token_id", "k", "v"]))
        offsets = np.zeros(len(pair_ids) + 1, np.int64)
        offsets[1:] = np.cumsum([heads * a * b for a, b in zip(n_q, n_k)])
        cols = [pa.array(pair_ids, pa.uint32()), pa.array(n_q, pa.uint16()), pa.array(n_k, pa.uint16()),
                pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), _flat(attention, self.dtype))]
        names = ["pair_id", "n_q", "n_k", "attention"]
        if bias is not None:
            cols.append(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), _flat(bias, "float32")))
            names.append("bias")
        self._write(f"{block}.attn.arrow", pa.record_batch(cols, names=names))


@dataclass
class BlockLayer:
    """One layer of one block: q (query side rows), k/v (key side rows) as float32, read on first use, and the
    model's attention [H, n_q, n_k] (and additive score terms, when the block has them) per pair."""

    block: str
    layer: int
    paths: tuple[Path, ...]  # the batch directories
    widths: tuple[int, int]  # (num_heads, num_kv_heads)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _index: dict[int, tuple[pa.RecordBatch, int]] | None = field(default=None, repr=False)

    def _vectors(self, file: str, name: str, heads: int) -> np.ndarray:
        if name not in self._arrays:
            batches = [_read_ipc(p / f"{self.block}.{file}.arrow").get_batch(self.layer) for p in self.paths]
            width = batches[0].schema.field(name).type.list_size
            self._arrays[name] = _rows(batches, name, width).reshape(-1, heads, width // heads)
        return self._arrays[name]

    def token_ids(self, side: str) -> np.ndarray:
        """Token ids (of `QUERY_SIDE` for ``"q"``, `KEY_SIDE` for ``"kv"``) of the rows of q, or of k and v."""
        return np.concatenate([_read_ipc(p / f"{self.block}.{side}.arrow").get_batch(self.layer).column(0)
                               .to_numpy() for p in self.paths]).astype(np.uint32)

    @property
    def q(self) -> np.ndarray:
        return self._vectors("q", "q", self.widths[0])

    @property
    def k(self) -> np.ndarray:
        return self._vectors("kv", "k", self.widths[1])

    @property
    def v(self) -> np.ndarray:
        return self._vectors("kv", "v", self.widths[1])

    def _row(self, pair_id: int) -> tuple[pa.RecordBatch, int]:
        if self._index is None:
            self._index = {}
            for p in self.paths:
                b = _read_ipc(p / f"{self.block}.attn.arrow").get_batch(self.layer)
                self._index.update({int(pid): (b, r) for r, pid in enumerate(b.column(0).to_numpy())})
        if pair_id not in self._index:
            raise KeyError(f"pair {pair_id} is not in this capture")
        return self._index[pair_id]

    def _matrix(self, pair_id: int, column: str) -> np.ndarray | None:
        b, r = self._row(pair_id)
        if column not in b.schema.names:
            return None
        n_q, n_k = int(b.column("n_q")[r].as_py()), int(b.column("n_k")[r].as_py())
        flat = b.column(column)[r].values.to_numpy(zero_copy_only=False)
        return flat.astype(np.float32).reshape(-1, n_q, n_k)

    def attention(self, pair_id: int) -> np.ndarray:
        """[H, n_q, n_k] float32: the model's own attention probabilities for one pair."""
        out = self._matrix(pair_id, "attention")
        assert out is not None
        return out

    def bias(self, pair_id: int) -> np.ndarray | None:
        """[H, n_q, n_k] additive score terms the model added to q·k·scaling (None: the block has none)."""
        return self._matrix(pair_id, "bias")


@dataclass
class EncDecCapture:
    facts: EncDecFacts
    tokens: dict[str, TokenTable]  # "encoder" / "decoder"
    pairs: pa.Table
    directory: Path
    dtype: str = "float16"
    batches_total: int = 0
    batches_reused: int = 0

    def layer(self, block: str, layer: int) -> BlockLayer:
        f = self.facts.block(block)
        if not 0 <= layer < f.num_layers:
            raise IndexError(f"{block} layer {layer} out of range 0..{f.num_layers - 1}")
        paths = tuple(batch_dir(self.directory, b) for b in range(self.batches_total))
        return BlockLayer(block, layer, paths, (f.num_heads, f.num_kv_heads))

    def query_tokens(self, block: str) -> TokenTable:
        return self.tokens[QUERY_SIDE[block]]

    def key_tokens(self, block: str) -> TokenTable:
        return self.tokens[KEY_SIDE[block]]


def read_encdec_meta(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} holds no finished capture (no {META_FILE})")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != KIND:
        raise ValueError(f"{path}: not an encoder–decoder capture of format {FORMAT_VERSION}")
    return meta


def write_tokens(out_dir: Path, tokens: dict[str, TokenTable]) -> None:
    (Path(out_dir) / TOKENS_DIR).mkdir(exist_ok=True)
    for side in SIDES:
        write_table_atomic(tokens[side].to_arrow(), tokens_file(out_dir, side))


def load_encdec_capture(out_dir: Path) -> EncDecCapture:
    """Re-open a finished encoder–decoder capture."""
    out_dir = Path(out_dir)
    meta = read_encdec_meta(out_dir)
    tokens = {side: TokenTable.from_arrow(_read_ipc(tokens_file(out_dir, side)).read_all()) for side in SIDES}
    pairs = _read_ipc(out_dir / PAIRS_FILE).read_all()
    n = int(meta["num_batches"])
    return EncDecCapture(EncDecFacts.from_json(meta["facts"]), tokens, pairs, out_dir, meta["dtype"], n, n)


__all__ = ["BLOCKS", "BlockBatchWriter", "BlockLayer", "EncDecCapture", "load_encdec_capture", "write_tokens"]
