"""Write the files the site reads (see docs/reference/formats.md): Arrow IPC tables, attention blobs, manifest."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from .. import SCHEMA_VERSION
from ..fsutil import atomic_path, write_bytes, write_json

QMAX = 65535
ATTN_MAGIC = b"ATTN"


def _schema_meta(extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {"atlas.schema_version": str(SCHEMA_VERSION)}
    meta.update(extra or {})
    return {k.encode(): v.encode() for k, v in sorted(meta.items())}


def write_table(path: Path, table: pa.Table) -> None:
    """Arrow IPC file, uncompressed (browsers read it without a codec), one record batch."""
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, table.num_rows))


def tokens_table(token_id: np.ndarray, sentence_id: np.ndarray, position: np.ndarray,
                 sentence_length: np.ndarray, text: Sequence[str], special: np.ndarray,
                 patch_row: np.ndarray | None = None, patch_col: np.ndarray | None = None) -> pa.Table:
    """One row per token; the text column is dictionary-encoded (values in first-seen order: deterministic).

    Image models add ``patch_row``/``patch_col`` (int16; -1 for CLS/register tokens)."""
    texts = pa.array(list(text), pa.string()).dictionary_encode()
    cols = {
        "token_id": pa.array(token_id, pa.uint32()),
        "sentence_id": pa.array(sentence_id, pa.uint32()),
        "position": pa.array(position, pa.uint16()),
        "sentence_length": pa.array(sentence_length, pa.uint16()),
        "text": texts,
        "special": pa.array(np.asarray(special, bool), pa.bool_()),
    }
    if (patch_row is None) != (patch_col is None):
        raise ValueError("patch_row and patch_col go together")
    if patch_row is not None and patch_col is not None:
        cols["patch_row"] = pa.array(np.asarray(patch_row, np.int16), pa.int16())
        cols["patch_col"] = pa.array(np.asarray(patch_col, np.int16), pa.int16())
    table = pa.table(cols)
    return table.replace_schema_metadata(_schema_meta())


def points_table(token_id: np.ndarray, sentence_id: np.ndarray, position: np.ndarray) -> pa.Table:
    """Queries take point ids 0..N-1 and keys N..2N-1; the ids are explicit columns all the same."""
    n = len(token_id)
    return pa.table({
        "point_id": pa.array(np.arange(2 * n, dtype=np.uint32)),
        "token_id": pa.array(np.concatenate([token_id, token_id]).astype(np.uint32)),
        "is_key": pa.array(np.repeat(np.array([0, 1], np.uint8), n)),
        "sentence_id": pa.array(np.concatenate([sentence_id, sentence_id]).astype(np.uint32)),
        "position": pa.array(np.concatenate([position, position]).astype(np.uint16)),
    }).replace_schema_metadata(_schema_meta())


def quantize(values: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Map a column to uint16 over its [min, max] range; returns (codes, [min, max])."""
    v = np.asarray(values, np.float64)
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1.0
    codes = np.rint((v - lo) / (hi - lo) * QMAX).astype(np.uint16)
    return codes, [lo, hi]


def head_table(point_id: np.ndarray, layouts: Mapping[str, np.ndarray],
               norms: np.ndarray) -> tuple[pa.Table, dict[str, list[list[float]]]]:
    """Per-head coordinates (uint16 per layout dimension) and norms; returns the table and the ranges."""
    cols: dict[str, pa.Array] = {"point_id": pa.array(np.asarray(point_id, np.uint32))}
    ranges: dict[str, list[list[float]]] = {}
    for layout in sorted(layouts):
        coords = np.asarray(layouts[layout])
        ranges[layout] = []
        for dim, axis in zip(range(coords.shape[1]), "xyz"):
            codes, rng = quantize(coords[:, dim])
            cols[f"{layout}_{axis}"] = pa.array(codes)
            ranges[layout].append(rng)
    cols["norm"] = pa.array(np.asarray(norms, np.float32))
    meta = {"atlas.ranges": json.dumps(ranges, sort_keys=True)}
    return pa.table(cols).replace_schema_metadata(_schema_meta(meta)), ranges


def attention_blob(blocks: Sequence[tuple[int, int, np.ndarray]]) -> bytes:
    """Encode (sentence_id, first token_id, [n, n] probabilities) blocks; weights quantized to uint8 (/255)."""
    header = ATTN_MAGIC + struct.pack("<II", SCHEMA_VERSION, len(blocks))
    offset = len(header) + 16 * len(blocks)
    table, payload = [], []
    for sentence_id, first_token, probs in blocks:
        n = probs.shape[0]
        if probs.shape != (n, n):
            raise ValueError(f"attention block of sentence {sentence_id} is not square: {probs.shape}")
        table.append(struct.pack("<IIII", sentence_id, first_token, n, offset))
        data = np.rint(np.clip(probs, 0.0, 1.0) * 255).astype(np.uint8).tobytes()
        payload.append(data)
        offset += len(data)
    return header + b"".join(table) + b"".join(payload)


def write_attention(path: Path, blocks: Sequence[tuple[int, int, np.ndarray]]) -> None:
    write_bytes(path, attention_blob(blocks))


def write_manifest(path: Path, manifest: Mapping) -> None:
    write_json(path, {**manifest, "schema_version": SCHEMA_VERSION})
