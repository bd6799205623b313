"""Write one model's data directory from its capture and per-head results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..capture import CaptureResult, read_layer
from ..capture.store import read_meta
from ..datasets import dataset_info
from ..datasets.images import dataset_license
from ..export import head_table, points_table, tokens_table, write_attention, write_manifest, write_table
from ..export.thumbnails import write_thumbnail
from ..export.tiles import write_tiles, zoom_levels
from ..fsutil import write_bytes
from ..manifest import Manifest, ModelSpec
from .heads import HeadResult


@dataclass(frozen=True)
class ExportedModel:
    name: str
    title: str
    data_dir: Path
    manifest: dict


def _sentence_blocks(cap: CaptureResult) -> list[tuple[int, int, int]]:
    """(sentence_id, first token_id, length) in token order."""
    tok = cap.tokens
    starts = np.flatnonzero(tok.position == 0)
    return [(int(tok.sentence_id[s]), int(tok.token_id[s]), int(tok.sentence_length[s])) for s in starts]


def _loaded_revision(cap: CaptureResult) -> str:
    """What the capture actually loaded (package version, ONNX file identity, random seed, hub revision)."""
    try:
        return str(read_meta(cap.directory).get("revision") or "")
    except (OSError, ValueError):
        return ""


def _export_images(cap: CaptureResult, data_dir: Path) -> list[dict]:
    """Copy each captured image (the fitted square picture the model saw) to ``images/<image_id>.png``."""
    out = []
    for im in cap.images:
        rel = f"images/{int(im['image_id'])}.png"
        write_bytes(data_dir / rel, (cap.directory / im["file"]).read_bytes())
        out.append({"image_id": int(im["image_id"]), "name": str(im["name"]), "file": rel,
                    "license": str(im.get("license", "")), "attribution": str(im.get("attribution", ""))})
    return out


def export_model(manifest: Manifest, spec: ModelSpec, cap: CaptureResult, results: list[HeadResult],
                 data_dir: Path) -> ExportedModel:
    tok, facts = cap.tokens, cap.facts
    write_table(data_dir / "tokens.arrow", tokens_table(tok.token_id, tok.sentence_id, tok.position,
                                                        tok.sentence_length, tok.text, tok.special,
                                                        tok.patch_row, tok.patch_col))
    images = _export_images(cap, data_dir)
    points = points_table(tok.token_id, tok.sentence_id, tok.position)
    write_table(data_dir / "points.arrow", points)
    point_id = points.column("point_id").to_numpy()
    is_key = points.column("is_key").to_numpy().astype(bool)
    blocks = _sentence_blocks(cap)
    by_layer: dict[int, list[HeadResult]] = {}
    for res in results:
        by_layer.setdefault(res.layer, []).append(res)
    heads_meta = []
    size = manifest.export.thumbnail_size
    for layer, layer_results in sorted(by_layer.items()):
        lc = read_layer(cap.directory, layer)
        attn = {sid: lc.attention(sid) for sid, _, _ in blocks}
        for res in layer_results:
            stem = f"L{res.layer}H{res.head}"
            table, ranges = head_table(point_id, res.layouts, res.norms)
            write_table(data_dir / f"{stem}.arrow", table)
            write_attention(data_dir / "attn" / f"{stem}.bin",
                            [(sid, first, attn[sid][res.head]) for sid, first, _ in blocks])
            thumbs, tiles = {}, {}
            for name, coords in sorted(res.layouts.items()):
                if coords.shape[1] == 2:
                    rel = f"thumbs/{stem}_{name}.png"
                    write_thumbnail(data_dir / rel, coords, is_key, size)
                    thumbs[name] = rel
                    if len(point_id) > manifest.export.tile_threshold:
                        rel = f"tiles/{stem}_{name}"
                        meta = write_tiles(data_dir / rel, coords, is_key, zoom_levels(len(point_id)))
                        tiles[name] = {"dir": rel, **meta}
            heads_meta.append({
                "layer": res.layer, "head": res.head, "kv_head": res.kv_head, "file": f"{stem}.arrow",
                "attn": f"attn/{stem}.bin", "thumbs": thumbs, "tiles": tiles, "ranges": ranges, "norm": res.normalization,
                "metrics": res.metrics, "label": res.label, "trust": res.trust,
            })
    data = manifest.dataset(spec.dataset)
    info = dataset_info(data)
    dataset = {"name": info.name, "source": info.source, "seed": info.seed, "license": info.license,
               "attribution": info.attribution, "num_sentences": len(blocks), "num_tokens": len(tok.token_id)}
    model = {**facts.to_json(), "name": spec.name, "title": spec.title or spec.name, "source": spec.source,
             "revision": _loaded_revision(cap) or spec.revision, "license": spec.license}
    if facts.input_kind == "image":
        # Per-image licences summarised (distinct values in order); the manifest's own fill in when images carry none.
        lic, att = dataset_license([SimpleNamespace(**im) for im in images])
        dataset.update(kind="images", num_images=len(images), license=lic or info.license,
                       attribution=att or info.attribution)
        ph, pw = facts.patch_size or (0, 0)
        model["patch_size"] = ph if ph == pw else [ph, pw]
        ih, iw = facts.image_size or (0, 0)
        model["image_size"] = ih if ih == iw else [ih, iw]
    else:
        for k in ("patch_size", "image_size"):  # image-only facts
            model.pop(k, None)
    doc = {
        "model": model,
        "dataset": dataset,
        "layouts": list(manifest.projections.layouts),
        "points": {"file": "points.arrow", "count": int(len(point_id))},
        "tokens": {"file": "tokens.arrow", "count": int(len(tok.token_id))},
        "heads": heads_meta,
    }
    if images:
        doc["images"] = images
    write_manifest(data_dir / "manifest.json", doc)
    return ExportedModel(spec.name, spec.title or spec.name, data_dir, doc)
