"""The value view's files: per key/value head (its query heads share them under grouped-query attention) the value
layouts (coordinates files with their token ids) and ‖v‖ of every token; per query head ‖o_i‖ = ‖Σ_j A_ij v_j‖ and
Σ_j A_ij ‖v_j‖ of every token (the flow panel's numbers, computed by the build in float64 from the captured attention
and values). See docs/reference/formats.md, "Values"."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import SCHEMA_VERSION
from ..fsutil import write_bytes
from .writer import COORD_BITS, byte_planes, write_coords

VALUE_FILES = {
    "coords": "values/coords/L{layer}V{kv_head}_{layout}.bin.gz",
    "norms": "values/norms/L{layer}V{kv_head}.bin.gz",
    "outputs": "values/outputs/L{layer}H{head}.bin.gz",
}
NORMS_MAGIC = {"norms": b"VNRM", "outputs": b"ONRM"}
NORMS_COLUMNS = {"norms": 1, "outputs": 2}
#: What the flow panel's output is: the head's output before its share of the output projection W_O (the capture
#: records W_Q and W_K only, so the per-head W_O slice is not known to the site).
OUTPUT_SPACE = "before W_O"


def value_path(kind: str, layer: int, index: int, layout: str = "") -> str:
    """Relative path of one value file under data/<model>/; ``index`` is the key/value head (``coords``, ``norms``)
    or the query head (``outputs``)."""
    if kind == "coords" and not layout:
        raise ValueError("a value layout file needs a layout")
    return VALUE_FILES[kind].format(layer=int(layer), kv_head=int(index), head=int(index), layout=layout)


def token_value_norms(values: np.ndarray) -> np.ndarray:
    """[N, KV] ‖v‖ in float64 of every token's value vector of each key/value head (``values`` [N, KV, dv]), one
    key/value head at a time (no float64 copy of the whole layer)."""
    v = np.asarray(values)
    return np.stack([np.linalg.norm(np.asarray(v[:, kv], np.float64), axis=1) for kv in range(v.shape[1])], axis=1)


def norms_blob(kind: str, layer: int, index: int, token_ids: np.ndarray, norms: np.ndarray) -> bytes:
    """One norms file, float32 per token with its explicit id, each column stored as byte planes (format in
    docs/reference/formats.md): ``kind`` "norms", [N] ‖v‖ of a key/value head; "outputs", [N, 2] ‖o‖ and
    Σ a‖v‖ of a query head."""
    ids = np.asarray(token_ids, "<u4")
    x = np.asarray(norms, "<f4")
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or len(x) != len(ids) or x.shape[1] != NORMS_COLUMNS[kind]:
        raise ValueError(f"{kind}: {np.shape(norms)} norms for {ids.shape} token ids")
    header = NORMS_MAGIC[kind] + struct.pack("<4I", SCHEMA_VERSION, int(layer), int(index), len(ids))
    return header + byte_planes(ids) + b"".join(byte_planes(np.ascontiguousarray(c)) for c in x.T)


def write_layer_values(data_dir: Path, layer: int, value_norms: np.ndarray, token_ids: np.ndarray,
                       has_point: np.ndarray, value_layouts: Mapping[int, Mapping[str, np.ndarray]],
                       outputs: Mapping[int, np.ndarray], coordinate_bits: int = COORD_BITS) -> None:
    """Write the value files of one layer: ``value_norms`` [N, KV] (‖v‖ of every token, token order),
    ``value_layouts`` key/value head → layout → [m, 2] coordinates of the point tokens (``has_point``) in token
    order (stored at ``coordinate_bits``, as the head's layouts), ``outputs`` query head → [N, 2] ‖o‖ and Σ a‖v‖ of
    every token in token order."""
    ids = np.asarray(token_ids)
    point_ids = ids[np.asarray(has_point, bool)]
    for kv, layouts in sorted(value_layouts.items()):
        for name, coords in sorted(layouts.items()):
            write_coords(data_dir / value_path("coords", layer, kv, name), coords, layer, kv, name, coordinate_bits,
                         token_ids=point_ids)
        _write_norms(data_dir, "norms", layer, kv, ids, value_norms[:, kv])
    for head, norms in sorted(outputs.items()):
        _write_norms(data_dir, "outputs", layer, head, ids, norms)


def _write_norms(data_dir: Path, kind: str, layer: int, index: int, ids: np.ndarray, norms: np.ndarray) -> None:
    blob = norms_blob(kind, layer, index, ids, norms)
    write_bytes(data_dir / value_path(kind, layer, index), gzip.compress(blob, 9, mtime=0))


def values_section(results: Sequence, order: Sequence[str], dims: int) -> dict:
    """manifest.json's ``values``: the value layouts the key/value heads have (those of ``order`` first, in its
    order), the vectors' dimension, what the flow panel's output is, and the path templates."""
    names = sorted({n for r in results for n in r.value_layouts},
                   key=lambda n: (order.index(n) if n in order else len(order), n))
    return {"layouts": names, "dims": int(dims), "output": OUTPUT_SPACE, "files": dict(VALUE_FILES)}
