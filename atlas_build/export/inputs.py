"""Per-input files of the model view and the neuron view (docs/reference/formats.md):

* ``inputs/S<id>_L<l>.bin.gz``: one input's attention in every head of one layer, the only copy of the attention
  weights: the model view opens one file per layer, a head page the file of the sentence it shows;
* ``vectors/L<l>Q<h>.bin`` / ``vectors/L<l>K<kv>.bin``: the query vectors of one query head and the key vectors of
  one key/value head over the featured inputs, float16 (float32 when a value does not fit), as the attention's
  dot product uses them.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import SCHEMA_VERSION
from ..errors import SchemaVersionError
from ..fsutil import write_bytes
from .writer import GZIP_LEVEL

INPUT_MAGIC = b"ATTI"
INPUT_HEADER = 28  #: bytes before the heads table
#: How an input file's blocks hold the n × n weights (its header's `packing`): all of them, or rows 0..n-1 of the
#: lower triangle (positions 0..i of row i), which a causal model's weights fit in.
FULL, LOWER = 0, 1
VECTOR_MAGIC = b"QKVF"
ROLES = ("query", "key")
FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Path templates written into manifest.json (`inputs.files`).
INPUT_FILES = {
    "attention": "inputs/S{input}_L{layer}.bin.gz",
    "query": "vectors/L{layer}Q{head}.bin",
    "key": "vectors/L{layer}K{kv_head}.bin",
}


def input_path(kind: str, **ids: int) -> str:
    return INPUT_FILES[kind].format(**{k: int(v) for k, v in ids.items()})


def quantize_weights(probs: np.ndarray) -> np.ndarray:
    """Attention probabilities as the attention files store them: round(p × 255), uint8."""
    return np.rint(np.clip(probs, 0.0, 1.0) * 255).astype(np.uint8)


def input_blob(input_id: int, first_token: int, heads: Sequence[tuple[int, int, int, np.ndarray]]) -> bytes:
    """One input over some heads (one layer's in the site): (layer, head, kv_head, [n, n] probabilities) per head.
    When every stored weight above the diagonal is 0 (a causal model), the blocks hold the lower triangles only."""
    n = heads[0][3].shape[0] if heads else 0
    codes = []
    for layer, head, _, probs in heads:
        if probs.shape != (n, n):
            raise ValueError(f"attention of input {input_id} at L{layer}H{head} is {probs.shape}, expected {(n, n)}")
        codes.append(quantize_weights(probs))
    packing = LOWER if n > 1 and not any(np.triu(c, 1).any() for c in codes) else FULL
    header = INPUT_MAGIC + struct.pack("<6I", SCHEMA_VERSION, input_id, first_token, n, len(heads), packing)
    offset = len(header) + 16 * len(heads)
    lower = np.tril_indices(n)
    table, payload = [], []
    for (layer, head, kv, _), c in zip(heads, codes):
        table.append(struct.pack("<IIII", layer, head, kv, offset))
        payload.append((c[lower] if packing == LOWER else c).tobytes())
        offset += len(payload[-1])
    return header + b"".join(table) + b"".join(payload)


def write_input_attention(path: Path, input_id: int, first_token: int,
                          heads: Sequence[tuple[int, int, int, np.ndarray]]) -> None:
    """gzip-compressed like the attention files (no timestamp: identical inputs give identical bytes)."""
    write_bytes(path, gzip.compress(input_blob(input_id, first_token, heads), GZIP_LEVEL, mtime=0))


def _check(data: bytes, magic: bytes, path: Path) -> None:
    if data[:4] != magic:
        raise ValueError(f"{path} is not a {magic.decode()} file")
    version = struct.unpack_from("<I", data, 4)[0]
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{path} has schema version {version}, expected {SCHEMA_VERSION}")


@dataclass(frozen=True)
class InputAttention:
    input_id: int
    first_token: int
    weights: dict[tuple[int, int], np.ndarray]  # (layer, head) → [n, n] uint8 (weight × 255)
    kv_head: dict[tuple[int, int], int]


def read_input_attention(path: Path) -> InputAttention:
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    _check(data, INPUT_MAGIC, path)
    input_id, first, n, count, packing = struct.unpack_from("<5I", data, 8)
    if packing not in (FULL, LOWER):
        raise ValueError(f"{path}: unknown block packing {packing}")
    lower = np.tril_indices(n)
    weights, kv_head = {}, {}
    for i in range(count):
        layer, head, kv, offset = struct.unpack_from("<IIII", data, INPUT_HEADER + 16 * i)
        if packing == FULL:
            weights[(layer, head)] = np.frombuffer(data, np.uint8, n * n, offset).reshape(n, n)
        else:
            w = np.zeros((n, n), np.uint8)
            w[lower] = np.frombuffer(data, np.uint8, len(lower[0]), offset)
            weights[(layer, head)] = w
        kv_head[(layer, head)] = kv
    return InputAttention(input_id, first, weights, kv_head)


def vector_blob(layer: int, role: str, index: int, blocks: Sequence[tuple[int, int, np.ndarray]]) -> bytes:
    """One head's vectors over the featured inputs: (input id, first token id, [n, d] vectors) per input, in
    float16, or float32 when a value is beyond float16's range."""
    dim = blocks[0][2].shape[1] if blocks else 0
    wide = any(np.abs(v).max(initial=0.0) > FLOAT16_MAX for _, _, v in blocks)
    dtype = np.dtype("<f4" if wide else "<f2")
    header = VECTOR_MAGIC + struct.pack("<IIIIIII", SCHEMA_VERSION, layer, ROLES.index(role), index, dim,
                                        dtype.itemsize, len(blocks))
    offset = len(header) + 16 * len(blocks)
    table, payload = [], []
    for input_id, first, vectors in blocks:
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"vectors of input {input_id} are {vectors.shape}, expected [n, {dim}]")
        table.append(struct.pack("<IIII", input_id, first, vectors.shape[0], offset))
        payload.append(np.ascontiguousarray(vectors, dtype).tobytes())
        offset += len(payload[-1])
    return header + b"".join(table) + b"".join(payload)


def write_vectors(path: Path, layer: int, role: str, index: int, blocks: Sequence[tuple[int, int, np.ndarray]]) -> None:
    write_bytes(path, vector_blob(layer, role, index, blocks))


@dataclass(frozen=True)
class Vectors:
    layer: int
    role: str
    index: int  # query head (role "query") or key/value head (role "key")
    rows: dict[int, np.ndarray]  # input id → [n, d] (row = position)
    first_token: dict[int, int]


def read_vectors(path: Path) -> Vectors:
    data = Path(path).read_bytes()
    _check(data, VECTOR_MAGIC, path)
    layer, role, index, dim, width, count = struct.unpack_from("<IIIIII", data, 8)
    dtype = np.dtype({2: "<f2", 4: "<f4"}[width])
    rows, first = {}, {}
    for i in range(count):
        input_id, first_token, n, offset = struct.unpack_from("<IIII", data, 32 + 16 * i)
        rows[input_id] = np.frombuffer(data, dtype, n * dim, offset).reshape(n, dim)
        first[input_id] = first_token
    return Vectors(layer, ROLES[role], index, rows, first)
