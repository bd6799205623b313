"""The value view's files, one set per key/value head (its query heads share them under grouped-query attention):
the value layouts (token ids and quantized coordinates) and the value vectors of every token (the flow panel's
weighted sums). See docs/reference/formats.md, "Values"."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import SCHEMA_VERSION
from ..fsutil import write_bytes
from .writer import QMAX, quantize, schema_meta, smallest_uint, write_table

VALUE_FILES = {
    "coords": "values/coords/L{layer}V{kv_head}_{layout}.arrow",
    "vectors": "values/vectors/L{layer}V{kv_head}.bin.gz",
}
VALS_MAGIC = b"VALS"
INT8_MAX = 127
#: What the flow panel's output is: the head's output before its share of the output projection W_O (the capture
#: records W_Q and W_K only, so the per-head W_O slice is not known to the site).
OUTPUT_SPACE = "before W_O"


def value_path(kind: str, layer: int, kv_head: int, layout: str = "") -> str:
    """Relative path of one value file under data/<model>/."""
    if kind == "coords" and not layout:
        raise ValueError("a value layout file needs a layout")
    return VALUE_FILES[kind].format(layer=int(layer), kv_head=int(kv_head), layout=layout)


def value_coords_table(coords: np.ndarray, token_ids: np.ndarray, layer: int, kv_head: int, layout: str) -> pa.Table:
    """One value layout: one row per value point, its explicit ``token_id``, x/y quantized to uint16."""
    xy = np.asarray(coords)
    if len(xy) != len(token_ids):
        raise ValueError(f"{len(xy)} value coordinates for {len(token_ids)} tokens")
    cols: dict[str, pa.Array] = {"token_id": smallest_uint(token_ids)}
    ranges = []
    for dim, axis in zip(range(xy.shape[1]), "xyz"):
        codes, rng = quantize(xy[:, dim], QMAX)
        cols[axis] = pa.array(codes, pa.uint16())
        ranges.append(rng)
    meta = schema_meta({"atlas.layer": str(int(layer)), "atlas.kv_head": str(int(kv_head)), "atlas.layout": layout,
                        "atlas.range": json.dumps(ranges)})
    return pa.table(cols).replace_schema_metadata(meta)


def quantize_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: (codes [N, d] int8, scales [N] float32) with value ≈ code × scale."""
    v = np.asarray(values, np.float64)
    scale = (np.abs(v).max(axis=1) / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)
    codes = np.clip(np.rint(v / safe[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scale


def value_vectors_blob(layer: int, kv_head: int, token_ids: np.ndarray, values: np.ndarray) -> bytes:
    """The value vectors of one key/value head for every token (format in docs/reference/formats.md)."""
    ids = np.asarray(token_ids, np.int64)
    v = np.asarray(values)
    if v.ndim != 2 or len(v) != len(ids):
        raise ValueError(f"values must be [{len(ids)}, d], got {v.shape}")
    codes, scale = quantize_rows(v)
    header = VALS_MAGIC + struct.pack("<5I", SCHEMA_VERSION, int(layer), int(kv_head), v.shape[1], len(ids))
    return (header + ids.astype("<u4").tobytes() + scale.astype("<f4").tobytes() + codes.tobytes())


def write_layer_values(data_dir: Path, layer: int, values: np.ndarray, token_ids: np.ndarray, has_point: np.ndarray,
                       value_layouts: Mapping[int, Mapping[str, np.ndarray]]) -> int:
    """Write the value files of one layer: ``values`` [N, KV, dv] (every token, token order), ``value_layouts``
    key/value head → layout → [m, 2] coordinates of the point tokens (``has_point``) in token order. Returns dv."""
    ids = np.asarray(token_ids)
    point_ids = ids[np.asarray(has_point, bool)]
    for kv, layouts in sorted(value_layouts.items()):
        for name, coords in sorted(layouts.items()):
            write_table(data_dir / value_path("coords", layer, kv, name),
                        value_coords_table(coords, point_ids, layer, kv, name))
        blob = value_vectors_blob(layer, kv, ids, values[:, kv])
        write_bytes(data_dir / value_path("vectors", layer, kv), gzip.compress(blob, 9, mtime=0))
    return int(values.shape[2])


def values_section(results: Sequence, order: Sequence[str], dims: int) -> dict:
    """manifest.json's ``values``: the value layouts the key/value heads have (those of ``order`` first, in its
    order), the vectors' dimension, what the flow panel's output is, and the path templates."""
    names = sorted({n for r in results for n in r.value_layouts},
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    return {"layouts": names, "dims": int(dims), "output": OUTPUT_SPACE, "files": dict(VALUE_FILES)}
