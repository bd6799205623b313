"""Read the exported files back (used by tests and tools); refuses any other schema version."""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import SCHEMA_VERSION
from ..errors import SchemaVersionError
from .paths import head_path, layout_file
from .inputs import read_input_attention
from .values import NORMS_COLUMNS, NORMS_MAGIC
from .writer import COORDS_MAGIC, NORM_QMAX, VALUE_COORDS_MAGIC

GZIP_MAGIC = b"\x1f\x8b"


def _check(version: object, path: Path) -> None:
    if str(version) != str(SCHEMA_VERSION):
        raise SchemaVersionError(f"{path}: schema version {version}, this reader understands {SCHEMA_VERSION}; "
                                 "rebuild the atlas with this version of attention-atlas")


def read_json(path: Path) -> dict:
    data = json.loads(Path(path).read_text("utf-8"))
    _check(data.get("schema_version"), path)
    return data


def read_manifest(path: Path) -> dict:
    return read_json(path)


def read_table(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    _check(table_meta(table).get("atlas.schema_version", "?"), path)
    return table


def table_meta(table: pa.Table) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}


def _path(data_dir: Path, manifest: dict, kind: str, layer: int, head: int, layout: str | None = None) -> Path:
    return Path(data_dir) / head_path(kind, layer, head, layout, manifest["files"])


@dataclass
class Points:
    """Every point of the model in ascending point id order (the row order of every per-head file)."""

    point_id: np.ndarray
    token_id: np.ndarray
    is_key: np.ndarray


def read_points(data_dir: Path, manifest: dict) -> Points:
    """The points named by tokens.arrow's explicit `query_point` / `key_point` ids."""
    tokens = read_table(Path(data_dir) / manifest["tokens"]["file"])
    tid = tokens.column("token_id").to_numpy()
    ids, owners, kinds = [], [], []
    for kind, name in enumerate(("query_point", "key_point")):
        col = tokens.column(name)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        ids.append(col.fill_null(0).to_numpy()[valid].astype(np.int64))
        owners.append(tid[valid])
        kinds.append(np.full(int(valid.sum()), kind, np.uint8))
    pid, tok, key = np.concatenate(ids), np.concatenate(owners), np.concatenate(kinds)
    order = np.argsort(pid, kind="stable")
    if len(np.unique(pid)) != len(pid):
        raise SchemaVersionError(f"{data_dir}: tokens.arrow repeats a point id")
    return Points(pid[order], tok[order], key[order])


def _coords_file(path: Path, magic: bytes = COORDS_MAGIC) -> tuple[dict, bytes, int]:
    """(header, blob, offset of the ranges) of a coordinates file (``magic``: VCRD for a value layout),
    gzip-compressed or plain (`writer.coords_blob`)."""
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gzip.decompress(data)
    if data[:4] != magic:
        raise SchemaVersionError(f"{path}: not a {'value ' if magic != COORDS_MAGIC else ''}coordinates file")
    version, layer, head, points, dims, bits, name_len = struct.unpack_from("<7I", data, 4)
    _check(version, path)
    header = {"layer": layer, "head": head, "layout": data[32:32 + name_len].decode("ascii"), "points": points,
              "dims": dims, "bits": bits}
    return header, data, 32 + name_len


def coords_header(path: Path) -> dict:
    """The explicit ids and encoding of a coordinates file: layer, head, layout, points, dims, bits."""
    return _coords_file(path)[0]


def read_coords(path: Path) -> np.ndarray:
    """Dequantized [points, dims] coordinates of one head and layout (see `writer.coords_blob`)."""
    return _dequantized(path, *_coords_file(path))


def read_value_coords(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, dequantized [rows, 2] coordinates) of one value layout (a VCRD file, `writer.coords_blob`)."""
    header, data, at = _coords_file(path, VALUE_COORDS_MAGIC)
    rows, ranges_end = header["points"], at + 16 * header["dims"]
    if len(data) < ranges_end + 4 * rows:
        raise SchemaVersionError(f"{path}: truncated before its token ids")
    return _from_planes(data, ranges_end, rows, "<u4").astype(np.int64), _dequantized(path, header, data, at, 4 * rows)


def _from_planes(data: bytes, at: int, count: int, dtype: str) -> np.ndarray:
    """``count`` little-endian values of ``dtype`` stored as byte planes at ``at`` (`writer.byte_planes`)."""
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(data, np.uint8, size * count, at).reshape(size, count)
    return np.ascontiguousarray(planes.T).view(dtype)[:, 0]


def _dequantized(path: Path, header: dict, data: bytes, at: int, skip: int = 0) -> np.ndarray:
    points, dims, bits = header["points"], header["dims"], header["bits"]
    ranges = struct.unpack_from(f"<{2 * dims}d", data, at)
    at += 16 * dims + skip
    width = 2 if bits > 8 else 1
    if len(data) != at + width * points * dims:
        raise SchemaVersionError(f"{path}: {len(data) - at} coordinate bytes for {points} points × {dims} axes")
    planes = np.frombuffer(data, np.uint8, width * points * dims, at).reshape(width, dims, points).astype(np.int64)
    codes = planes[0] * 256 + planes[1] if width == 2 else planes[0]
    lo, hi = np.array(ranges[0::2])[:, None], np.array(ranges[1::2])[:, None]
    return (lo + codes / (2**bits - 1) * (hi - lo)).T


@dataclass
class ValueNorms:
    kind: str  #: "norms" (‖v‖ of a key/value head) or "outputs" (‖o‖ and Σ a‖v‖ of a query head)
    layer: int
    index: int  #: the key/value head or the query head
    token_id: np.ndarray
    norms: np.ndarray  #: [N, columns] float32


def read_value_norms(path: Path) -> ValueNorms:
    """A value view norms file (`values.norms_blob`), gzip-compressed or plain, its byte planes undone."""
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        data = gzip.decompress(data)
    kind = next((k for k, magic in NORMS_MAGIC.items() if data[:4] == magic), None)
    if kind is None:
        raise SchemaVersionError(f"{path}: not a value norms file")
    version, layer, index, n = struct.unpack_from("<4I", data, 4)
    _check(version, path)
    columns = NORMS_COLUMNS[kind]
    if len(data) != 20 + 4 * n * (1 + columns):
        raise SchemaVersionError(f"{path}: {len(data) - 20} bytes for {n} tokens × {1 + columns} values")
    norms = np.stack([_from_planes(data, 20 + 4 * n * (1 + c), n, "<f4") for c in range(columns)], axis=1)
    return ValueNorms(kind, layer, index, _from_planes(data, 20, n, "<u4").astype(np.int64), norms)


def read_norms(path: Path) -> np.ndarray:
    table = read_table(path)
    lo, hi = json.loads(table_meta(table)["atlas.range"])
    return lo + table.column("norm").to_numpy().astype(np.float64) / NORM_QMAX * (hi - lo)


@dataclass
class HeadCoords:
    point_id: np.ndarray
    layouts: dict[str, np.ndarray]
    norm: np.ndarray


def read_layout(data_dir: Path, layer: int, head: int, layout: str, manifest: dict | None = None) -> np.ndarray:
    """One layout of one head, rows in ascending point id order; a nested layout (manifest.json's
    `nested_layouts`) is the first axes of its host layout's file."""
    manifest = manifest or read_manifest(Path(data_dir) / "manifest.json")
    file, dims = layout_file(manifest, layout)
    path = _path(data_dir, manifest, "coords", layer, head, file)
    header, data, at = _coords_file(path)
    if (header["layer"], header["head"], header["layout"]) != (layer, head, file):
        raise SchemaVersionError(f"{path} holds layer {header['layer']} head {header['head']} {header['layout']}")
    coords = _dequantized(path, header, data, at)
    return coords if dims is None else coords[:, :dims]


def read_head(data_dir: Path, layer: int, head: int, manifest: dict | None = None) -> HeadCoords:
    """Every layout and the norms of one head, rows in ascending point id order."""
    manifest = manifest or read_manifest(Path(data_dir) / "manifest.json")
    points = read_points(data_dir, manifest)
    layouts = {name: read_layout(data_dir, layer, head, name, manifest) for name in manifest["layouts"]}
    norm = read_norms(_path(data_dir, manifest, "norms", layer, head))
    for name, coords in layouts.items():
        if len(coords) != len(points.point_id):
            raise SchemaVersionError(f"{data_dir}: L{layer}H{head} {name} has {len(coords)} rows for "
                                     f"{len(points.point_id)} points")
    return HeadCoords(points.point_id, layouts, norm)


def read_head_detail(data_dir: Path, layer: int, head: int, manifest: dict | None = None) -> dict:
    manifest = manifest or read_manifest(Path(data_dir) / "manifest.json")
    return read_json(_path(data_dir, manifest, "head", layer, head))


def read_head_attention(data_dir: Path, layer: int, head: int,
                        manifest: dict | None = None) -> dict[int, tuple[int, np.ndarray]]:
    """sentence_id → (first token_id, [n, n] float32 weights) of one head, from the per-input attention files."""
    manifest = manifest or read_manifest(Path(data_dir) / "manifest.json")
    template = manifest["inputs"]["files"]["attention"]
    sids = np.unique(read_table(Path(data_dir) / manifest["tokens"]["file"]).column("sentence_id").to_numpy())
    out = {}
    for sid in sids.tolist():
        stored = read_input_attention(Path(data_dir) / template.format(input=sid, layer=int(layer)))
        if stored.input_id != sid:
            raise SchemaVersionError(f"{data_dir}: the attention file of input {sid} holds input {stored.input_id}")
        out[sid] = (stored.first_token, stored.weights[(int(layer), int(head))].astype(np.float32) / 255.0)
    return out
