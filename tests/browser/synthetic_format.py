"""Writers for the synthetic sites, straight from docs/reference/formats.md (schema version 8).

Independent of atlas_build on purpose: the JavaScript views are checked against the written contract, not against
whatever the exporter happens to do."""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from atlas_build.export.colours import colour_manifest
from atlas_build.export.paths import HEAD_FILES as FILES

VERSION = 8
#: Where one input's attention in the heads of one layer lives (manifest.json's inputs.files.attention).
INPUT_ATTENTION = "inputs/S{input}_L{layer}.bin.gz"


def path(kind: str, layer: int, head: int, layout: str = "") -> str:
    return FILES[kind].format(layer=layer, head=head, layout=layout)


def meta(extra: dict[str, str] | None = None, version: int = VERSION) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in {"atlas.schema_version": str(version), **(extra or {})}.items()}


def write_arrow(file: Path, table: pa.Table) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def write_json(file: Path, doc: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(doc, sort_keys=True), "utf-8")


@dataclass
class TokenRow:
    token_id: int
    sentence: int
    position: int
    text: str
    special: bool
    query_point: int | None
    key_point: int | None
    patch: tuple[int, int] | None = None
    piece: str | None = None  # the tokenizer's raw piece; None: the same as the text


def write_tokens(file: Path, rows: list[TokenRow], version: int = VERSION) -> None:
    """tokens.arrow with uint32 ids (any unsigned width is allowed) and null point ids for tokens without points."""
    cols = {
        "token_id": pa.array([r.token_id for r in rows], pa.uint32()),
        "sentence_id": pa.array([r.sentence for r in rows], pa.uint32()),
        "position": pa.array([r.position for r in rows], pa.uint16()),
        "text": pa.array([r.text for r in rows], pa.string()).dictionary_encode(),
        "piece": pa.array([r.text if r.piece is None else r.piece for r in rows], pa.string()).dictionary_encode(),
        "special": pa.array([r.special for r in rows], pa.bool_()),
        "query_point": pa.array([r.query_point for r in rows], pa.uint32()),
        "key_point": pa.array([r.key_point for r in rows], pa.uint32()),
    }
    if rows and rows[0].patch is not None:
        cols["patch_row"] = pa.array([r.patch[0] for r in rows], pa.int16())
        cols["patch_col"] = pa.array([r.patch[1] for r in rows], pa.int16())
    write_arrow(file, pa.table(cols).replace_schema_metadata(meta(version=version)))


def write_coords(data_dir: Path, layer: int, head: int, layout: str, xyz: np.ndarray, version: int = VERSION,
                 bits: int = 16) -> None:
    """One layout of one head, gzip-compressed: header, [min, max] per axis (padded by 1 on every side), then the
    codes as byte planes, every axis's high bytes then every axis's low bytes (only the low ones when bits <= 8);
    rows in point id order."""
    name = layout.encode()
    header = b"CRDS" + struct.pack("<7I", version, layer, head, xyz.shape[0], xyz.shape[1], bits, len(name)) + name
    ranges, high, low = b"", b"", b""
    for dim in range(xyz.shape[1]):
        lo, hi = float(xyz[:, dim].min()) - 1.0, float(xyz[:, dim].max()) + 1.0
        codes = np.rint((xyz[:, dim] - lo) / (hi - lo) * (2**bits - 1)).astype(np.uint16)
        ranges += struct.pack("<2d", lo, hi)
        high += (codes >> 8).astype(np.uint8).tobytes()
        low += (codes & 255).astype(np.uint8).tobytes()
    planes = high + low if bits > 8 else low
    file = data_dir / path("coords", layer, head, layout)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(gzip.compress(header + ranges + planes, mtime=0))


def write_norms(data_dir: Path, layer: int, head: int, norms: np.ndarray, version: int = VERSION) -> None:
    lo, hi = float(norms.min()), float(norms.max())
    codes = np.rint((norms - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    extra = {"atlas.layer": str(layer), "atlas.head": str(head), "atlas.range": json.dumps([lo, hi])}
    write_arrow(data_dir / path("norms", layer, head),
                pa.table({"norm": pa.array(codes, pa.uint8())}).replace_schema_metadata(meta(extra, version)))


def _input_heads(file: Path) -> tuple[int, dict[tuple[int, int], tuple[int, bytes]]]:
    """(first token id, (layer, head) → (kv_head, n × n bytes)) of an input attention file written before."""
    if not file.exists():
        return 0, {}
    blob = file.read_bytes()
    blob = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    _, _, first, n, count, packing = struct.unpack_from("<6I", blob, 4)
    heads = {}
    for i in range(count):
        layer, head, kv, offset = struct.unpack_from("<4I", blob, 28 + 16 * i)
        if packing == 0:
            heads[(layer, head)] = (kv, blob[offset:offset + n * n])
        else:  # rows 0..n-1 of the lower triangle, back to n × n
            square = bytearray(n * n)
            for row in range(n):
                start = offset + row * (row + 1) // 2
                square[row * n:row * n + row + 1] = blob[start:start + row + 1]
            heads[(layer, head)] = (kv, bytes(square))
    return first, heads


def write_attention(data_dir: Path, layer: int, head: int, blocks: list[tuple[int, int, np.ndarray]],
                    version: int = VERSION, compress: bool = True, kv_head: int | None = None) -> None:
    """Adds one head's (input id, first token id, n × n weights) blocks to the inputs' files of its layer
    (inputs/S<id>_L<l>.bin.gz: header, (layer, head, kv_head, offset) per head in an order readers must not rely on,
    uint8 blocks: n × n, or lower triangles (packing 1) when no weight lies above the diagonal). `compress=False` writes the plain blob, as a browser receives it from a server that sends
    the file with Content-Encoding: gzip."""
    for sid, first, w in blocks:
        file = data_dir / INPUT_ATTENTION.format(input=sid, layer=layer)
        _, heads = _input_heads(file)
        heads[(layer, head)] = (head if kv_head is None else kv_head, np.rint(w * 255).astype(np.uint8).tobytes())
        n = w.shape[0]
        # packing 1 (lower triangles) when no stored weight lies above the diagonal, as for a causal model
        upper = [i * n + j for i in range(n) for j in range(i + 1, n)]
        packing = int(n > 1 and not any(data[u] for _, data in heads.values() for u in upper))
        header = b"ATTI" + struct.pack("<6I", version, sid, first, n, len(heads), packing)
        offset = len(header) + 16 * len(heads)
        table, payload = b"", b""
        for (l, h), (kv, data) in sorted(heads.items(), reverse=True):
            block = b"".join(data[i * n:i * n + i + 1] for i in range(n)) if packing else data
            table += struct.pack("<4I", l, h, kv, offset)
            payload += block
            offset += len(block)
        file.parent.mkdir(parents=True, exist_ok=True)
        blob = header + table + payload
        file.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)


def relative_means(blocks: list[np.ndarray]) -> tuple[int, list[float], list[int]]:
    """(span, mean per offset −span..span, count per offset) of bidirectional attention rows."""
    span = max(w.shape[0] for w in blocks) - 1
    sums, counts = np.zeros(2 * span + 1), np.zeros(2 * span + 1, int)
    for w in blocks:
        for i in range(w.shape[0]):
            for j in range(w.shape[0]):
                sums[j - i + span] += w[i, j]
                counts[j - i + span] += 1
    return span, [float(s / c) if c else 0.0 for s, c in zip(sums, counts)], counts.tolist()


@dataclass
class HeadRecord:
    layer: int
    head: int
    label: str
    metrics: dict
    detail: dict = field(default_factory=dict)
    faithfulness: dict = field(default_factory=dict)  #: layout → measure → value, as manifest.json summarises

    def summary(self) -> dict:
        out = {"layer": self.layer, "head": self.head, "kv_head": self.head, "label": self.label,
               "metrics": self.metrics}
        return {**out, "faithfulness": self.faithfulness} if self.faithfulness else out

    def write(self, data_dir: Path, version: int = VERSION) -> None:
        write_json(data_dir / path("head", self.layer, self.head), {**self.summary(), **self.detail,
                                                                   "schema_version": version})


def manifest(model: dict, dataset: dict, layouts: list[str], n_tokens: int, n_points: int, heads: list[HeadRecord],
             version: int = VERSION, **extra: object) -> dict:
    return {"schema_version": version, "model": model, "dataset": dataset, "layouts": layouts,
            "tokens": {"file": "tokens.arrow", "count": n_tokens}, "points": {"count": n_points}, "files": FILES,
            "thumbnails": {"layouts": [name for name in layouts if name.endswith("-2d")], "size": 48},
            "heads": [h.summary() for h in heads], "colours": colour_manifest(),
            "inputs": {"count": dataset.get("num_sentences", 0), "featured": [], "vectors": [],
                       "files": {"attention": INPUT_ATTENTION}}, **extra}
