"""Write the files the site reads (see docs/reference/formats.md): Arrow IPC tables, attention blobs, JSON."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from .. import SCHEMA_VERSION
from ..fsutil import atomic_path, write_bytes, write_json
from ..normalize.joint import point_ids
from .paths import HEAD_FILES, head_path

QMAX = 65535
COORDS_MAGIC = b"CRDS"
VALUE_COORDS_MAGIC = b"VCRD"  #: a value layout: CRDS with the rows' token ids after the ranges
#: Bits per coordinate unless the manifest's export.coordinate_bits says otherwise.
COORD_BITS = 16
NORM_QMAX = 255
GZIP_LEVEL = 9
#: Keys of a head's record that the manifest's path templates replace (not repeated in heads/L<l>H<h>.json).
TEMPLATED = ("thumbs",)
#: Keys of a head's record that manifest.json keeps for the matrix view (everything goes to the head's own file).
SUMMARY = ("layer", "head", "kv_head", "label", "metrics")
SUMMARY_DIGITS = 4


def schema_meta(extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {"atlas.schema_version": str(SCHEMA_VERSION)}
    meta.update(extra or {})
    return {k.encode(): v.encode() for k, v in sorted(meta.items())}


def head_meta(layer: int, head: int, extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    """Schema metadata of a per-head file: the version plus the head's explicit ids."""
    return schema_meta({"atlas.layer": str(int(layer)), "atlas.head": str(int(head)), **(extra or {})})


def write_table(path: Path, table: pa.Table) -> None:
    """Arrow IPC file, uncompressed (browsers read it without a codec), one record batch."""
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, table.num_rows))


def smallest_uint(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Unsigned ids in the narrowest of uint8/16/32 that holds them; rows where `valid` is False become nulls."""
    v = np.asarray(values, np.int64)
    if valid is not None:
        v = np.where(valid, v, 0)
    if v.size and v.min() < 0:
        raise ValueError("ids must not be negative")
    top = int(v.max(initial=0))
    kind = pa.uint8() if top < 2**8 else pa.uint16() if top < 2**16 else pa.uint32()
    mask = None if valid is None else ~np.asarray(valid, bool)
    return pa.array(v.astype(kind.to_pandas_dtype()), kind, mask=mask)


def smallest_int(values: np.ndarray) -> pa.Array:
    """Signed values (patch rows/columns, −1 for none) in the narrowest of int8/16/32."""
    v = np.asarray(values, np.int64)
    top = int(np.abs(v).max(initial=0))
    kind = pa.int8() if top < 2**7 else pa.int16() if top < 2**15 else pa.int32()
    return pa.array(v.astype(kind.to_pandas_dtype()), kind)


def dictionary_text(text: Sequence[str]) -> pa.DictionaryArray:
    """Dictionary-encoded strings, values in first-seen order, indices in the narrowest of int8/16/32."""
    codes: dict[str, int] = {}
    idx = np.fromiter((codes.setdefault(t, len(codes)) for t in text), np.int64, len(text))
    kind = pa.int8() if len(codes) <= 2**7 else pa.int16() if len(codes) <= 2**15 else pa.int32()
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(kind.to_pandas_dtype()), kind),
                                          pa.array(list(codes), pa.string()))


def tokens_table(token_id: np.ndarray, sentence_id: np.ndarray, position: np.ndarray, text: Sequence[str],
                 special: np.ndarray, query_point: np.ndarray, key_point: np.ndarray,
                 patch_row: np.ndarray | None = None, patch_col: np.ndarray | None = None,
                 piece: Sequence[str] | None = None, side: np.ndarray | None = None) -> pa.Table:
    """One row per token with its readable ``text``, its raw tokenizer ``piece`` (default: the text) and its
    explicit query/key point ids (null for tokens without points).

    Image models add ``patch_row``/``patch_col`` (narrowest signed type; -1 for CLS/register tokens). Cross-attention
    blocks add ``side`` (uint8: 0 = query-side token, with a query point only; 1 = key-side token, key point only)."""
    q, k = np.asarray(query_point, np.int64), np.asarray(key_point, np.int64)
    if side is None and not np.array_equal(q >= 0, k >= 0):
        raise ValueError("a token has either both a query and a key point or neither")
    if side is not None and (((q >= 0) & (np.asarray(side) != 0)).any() or ((k >= 0) & (np.asarray(side) != 1)).any()):
        raise ValueError("a cross-attention token has a query point only on the query side, a key point only on "
                         "the key side")
    valid, kvalid = q >= 0, k >= 0
    cols = {
        "token_id": smallest_uint(token_id),
        "sentence_id": smallest_uint(sentence_id),
        "position": smallest_uint(position),
        "text": dictionary_text(text),
        "piece": dictionary_text(text if piece is None else piece),
        "special": pa.array(np.asarray(special, bool), pa.bool_()),
        "query_point": smallest_uint(q, None if valid.all() else valid),
        "key_point": smallest_uint(k, None if kvalid.all() else kvalid),
    }
    if side is not None:
        cols["side"] = pa.array(np.asarray(side, np.uint8), pa.uint8())
    if (patch_row is None) != (patch_col is None):
        raise ValueError("patch_row and patch_col go together")
    if patch_row is not None and patch_col is not None:
        cols["patch_row"] = smallest_int(patch_row)
        cols["patch_col"] = smallest_int(patch_col)
    return pa.table(cols).replace_schema_metadata(schema_meta())


def quantize(values: np.ndarray, qmax: int = QMAX) -> tuple[np.ndarray, list[float]]:
    """Map a column to 0..qmax (uint16, or uint8 for qmax < 256) over its [min, max]; returns (codes, [min, max])."""
    v = np.asarray(values, np.float64)
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1.0
    dtype = np.uint8 if qmax < 256 else np.uint16
    return np.rint((v - lo) / (hi - lo) * qmax).astype(dtype), [lo, hi]


def byte_planes(a: np.ndarray) -> bytes:
    """A little-endian array's bytes regrouped by significance: byte 0 of every element, then byte 1, … (gzip finds
    the repeats of the high bytes)."""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
    return np.ascontiguousarray(b.T).tobytes()


def coords_blob(coords: np.ndarray, layer: int, head: int, layout: str, bits: int = COORD_BITS,
                token_ids: np.ndarray | None = None) -> bytes:
    """One layout of one head (rows in ascending point id order): each axis quantized to `bits` bits over its
    [min, max] and stored as byte planes: the high bytes of every point, axis after axis, then the low bytes (one
    plane per axis when bits <= 8), which gzip shrinks where interleaved uint16 codes do not (formats.md). With
    ``token_ids`` it is a value layout (``head`` the key/value head): magic VCRD, the rows' ids after the ranges."""
    xyz = np.asarray(coords, np.float64)
    if not 1 <= bits <= 16:
        raise ValueError(f"coordinate bits must be 1..16, got {bits}")
    if token_ids is not None and len(token_ids) != len(xyz):
        raise ValueError(f"{len(xyz)} coordinates for {len(token_ids)} tokens")
    name = layout.encode("ascii")
    magic = COORDS_MAGIC if token_ids is None else VALUE_COORDS_MAGIC
    header = magic + struct.pack("<IIIIIII", SCHEMA_VERSION, layer, head, xyz.shape[0], xyz.shape[1], bits,
                                 len(name)) + name
    ranges, codes = [], []
    for dim in range(xyz.shape[1]):
        axis, rng = quantize(xyz[:, dim], 2**bits - 1)
        ranges += rng
        codes.append(axis.astype(np.uint16))
    planes = [c >> 8 for c in codes] + [c & 0xFF for c in codes] if bits > 8 else codes
    ids = b"" if token_ids is None else byte_planes(np.asarray(token_ids, "<u4"))
    return (header + struct.pack(f"<{len(ranges)}d", *ranges) + ids
            + b"".join(p.astype(np.uint8).tobytes() for p in planes))


def write_coords(path: Path, coords: np.ndarray, layer: int, head: int, layout: str, bits: int = COORD_BITS,
                 token_ids: np.ndarray | None = None) -> None:
    """The coordinates blob, gzip-compressed without a timestamp (identical layouts give identical bytes)."""
    write_bytes(path, gzip.compress(coords_blob(coords, layer, head, layout, bits, token_ids), GZIP_LEVEL, mtime=0))


def norms_table(norms: np.ndarray, layer: int, head: int) -> pa.Table:
    """‖q‖ / ‖k‖ per point (ascending point id), quantized to uint8 over [min, max]."""
    codes, rng = quantize(norms, NORM_QMAX)
    meta = head_meta(layer, head, {"atlas.range": json.dumps(rng)})
    return pa.table({"norm": pa.array(codes, pa.uint8())}).replace_schema_metadata(meta)


def _rounded(value: object, digits: int) -> object:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


#: Per-layout faithfulness measures manifest.json keeps (the matrix view sorts by them), at 3 significant digits.
FAITHFULNESS_SUMMARY = ("query_rank_corr", "nearest_key_share")


def head_summary(record: Mapping) -> dict:
    """What manifest.json keeps of a head: ids, label, its scores rounded for sorting and display, and each
    layout's faithfulness measures (`faithfulness`: layout → measure → value; measures not defined are absent)."""
    out = {k: _rounded(record[k], SUMMARY_DIGITS) for k in SUMMARY if k in record}
    per_layout = {name: {k: _rounded(t[k], 3) for k in FAITHFULNESS_SUMMARY if k in t}
                  for name, t in sorted(record.get("trust", {}).items())}
    if any(per_layout.values()):
        out["faithfulness"] = per_layout
    return out


def head_detail(record: Mapping) -> dict:
    """A head's own file: every number of its record (full precision) plus the schema version."""
    detail = {k: v for k, v in record.items() if k not in TEMPLATED}
    return {**detail, "schema_version": SCHEMA_VERSION}


def write_manifest(data_dir: Path, doc: Mapping) -> dict:
    """Write manifest.json (model facts, path templates, one summary per head) and heads/L<l>H<h>.json per head.

    `doc["heads"]` holds each head's full record; returns what manifest.json contains."""
    heads = doc.get("heads", [])
    for record in heads:
        write_json(data_dir / head_path("head", record["layer"], record["head"]), head_detail(record))
    manifest = {**doc, "files": dict(HEAD_FILES), "heads": [head_summary(r) for r in heads],
                "schema_version": SCHEMA_VERSION}
    write_json(data_dir / "manifest.json", manifest)
    return manifest
