"""Read the exported files back (used by tests and tools); refuses any other schema version."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import SCHEMA_VERSION
from ..errors import SchemaVersionError
from .writer import ATTN_MAGIC, QMAX


def _check(version: object, path: Path) -> None:
    if str(version) != str(SCHEMA_VERSION):
        raise SchemaVersionError(f"{path}: schema version {version}, this reader understands {SCHEMA_VERSION}; "
                                 "rebuild the atlas with this version of attention-atlas")


def read_manifest(path: Path) -> dict:
    data = json.loads(Path(path).read_text("utf-8"))
    _check(data.get("schema_version"), path)
    return data


def read_table(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    meta = table.schema.metadata or {}
    _check(meta.get(b"atlas.schema_version", b"?").decode(), path)
    return table


@dataclass
class HeadCoords:
    point_id: np.ndarray
    layouts: dict[str, np.ndarray]
    norm: np.ndarray


def read_head(path: Path) -> HeadCoords:
    """Dequantized coordinates per layout, using the ranges stored in the file's metadata."""
    table = read_table(path)
    ranges = json.loads(table.schema.metadata[b"atlas.ranges"])
    layouts = {}
    for layout, dims in ranges.items():
        cols = []
        for (lo, hi), axis in zip(dims, "xyz"):
            codes = table.column(f"{layout}_{axis}").to_numpy().astype(np.float64)
            cols.append(lo + codes / QMAX * (hi - lo))
        layouts[layout] = np.stack(cols, axis=1)
    return HeadCoords(table.column("point_id").to_numpy(), layouts, table.column("norm").to_numpy())


def read_attention(path: Path) -> dict[int, tuple[int, np.ndarray]]:
    """sentence_id → (first token_id, [n, n] float32 weights)."""
    data = Path(path).read_bytes()
    if data[:4] != ATTN_MAGIC:
        raise SchemaVersionError(f"{path}: not an attention file")
    version, count = struct.unpack_from("<II", data, 4)
    _check(version, path)
    out = {}
    for i in range(count):
        sid, first, n, off = struct.unpack_from("<IIII", data, 12 + 16 * i)
        block = np.frombuffer(data, np.uint8, n * n, off).reshape(n, n)
        out[sid] = (first, block.astype(np.float32) / 255.0)
    return out
