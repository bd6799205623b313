"""Write one model's data directory from its capture and per-head results."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..capture import CaptureResult
from ..capture.store import read_meta
from ..datasets import dataset_info
from ..datasets.images import dataset_license
from ..export import SentenceAttention, colour_manifest, head_path, tokens_table, write_manifest, write_table
from ..export.head_files import HeadFileOptions, sentence_token_ids, write_head_files
from ..export.thumbnails import STRIP_PATH, preview_layout, strip_png
from ..export.values import token_value_norms, values_section, write_layer_values
from ..fsutil import write_bytes
from ..manifest import Manifest, ModelSpec
from ..project import nested_layouts
from ..metrics.registry import for_model
from ..metrics.values import output_norms, sentence_rows, values_by_sentence
from ..capture.encdec import KEY_SIDE, QUERY_SIDE
from ..normalize import key_starts
from ..normalize.joint import is_key as key_mask
from ..normalize.joint import point_ids
from .export_inputs import InputRecord, export_inputs
from .heads import HeadResult
from .units import block_of, slug_of, unit_slug


@dataclass(frozen=True)
class ExportedModel:
    name: str
    title: str
    data_dir: Path
    manifest: dict
    inputs: tuple[InputRecord, ...] = ()  # every input, for its model-view page
    dataset: str = ""  #: the dataset of this atlas unit
    datasets: tuple[str, ...] = ()  #: every dataset of the model when it has several (the site's switcher), else ()
    block: str = ""  #: an encoder–decoder model's attention block (`capture.encdec.BLOCKS`), else ""

    @property
    def slug(self) -> str:
        """Path of the unit under models/ and data/ (`units.slug_of`)."""
        return slug_of(self.name, self.dataset, bool(self.datasets), self.block)


def _sentence_blocks(cap: CaptureResult) -> list[tuple[int, int, int]]:
    """(sentence_id, first token_id, length) in token order."""
    tok = cap.tokens
    starts = np.flatnonzero(tok.position == 0)
    return [(int(tok.sentence_id[s]), int(tok.token_id[s]), int(tok.sentence_length[s])) for s in starts]


def _key_starts(cap: CaptureResult) -> dict[int, int]:
    """Cross-attention: input id → position of its first key-side token."""
    tok = cap.tokens
    return key_starts(tok.sentence_id, tok.position, tok.side)


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


def token_output_norms(attn: dict[int, np.ndarray], head: int, values: dict[int, np.ndarray],
                       rows: dict[int, np.ndarray], position: np.ndarray, causal: bool,
                       starts: dict[int, int] | None) -> np.ndarray:
    """[N, 2] ‖Σ_j A_ij v_j‖ and Σ_j A_ij ‖v_j‖ of one query head for every token, in token order
    (`metrics.values.output_norms`); ``values``: its key/value head's `values_by_sentence`, ``rows``:
    `sentence_rows` of the tokens."""
    by_sentence = output_norms({sid: a[head] for sid, a in attn.items()}, values, causal, starts)
    out = np.zeros((len(position), 2))
    for sid, r in rows.items():
        out[r] = by_sentence[sid][position[r]]
    return out


def export_model(manifest: Manifest, spec: ModelSpec, cap: CaptureResult, results: list[HeadResult],
                 data_dir: Path, has_point: np.ndarray | None = None) -> ExportedModel:
    """`has_point`: which tokens carry query/key points (default all; see the dataset's max_token_repeats)."""
    tok, facts = cap.tokens, cap.facts
    if has_point is None:
        has_point = np.ones(len(tok.token_id), bool)
    cross = tok.side is not None  # queries on the query side's tokens, keys on the key side's
    has_query, has_key = (has_point & (tok.side == 0), has_point & (tok.side == 1)) if cross else (has_point, has_point)
    query_point, key_point = point_ids(has_query, has_key)
    write_table(data_dir / "tokens.arrow", tokens_table(tok.token_id, tok.sentence_id, tok.position, tok.text,
                                                        tok.special, query_point, key_point,
                                                        tok.patch_row, tok.patch_col, piece=tok.piece, side=tok.side))
    images = _export_images(cap, data_dir)
    num_queries = int(has_query.sum())
    num_points = num_queries + int(has_key.sum())
    is_key = key_mask(num_points, num_queries)
    token_ids = sentence_token_ids(tok.token_id, tok.sentence_id, tok.position)
    opts = HeadFileOptions(causal=facts.causal, thumbnail_size=manifest.export.thumbnail_size,
                           tile_threshold=manifest.export.tile_threshold,
                           coordinate_bits=manifest.export.coordinate_bits,
                           patch_grid=tuple(facts.patch_grid) if facts.input_kind == "image" else None,
                           num_prefix_tokens=int(facts.num_prefix_tokens or 0),
                           key_starts=_key_starts(cap) if cross else None)
    blocks = _sentence_blocks(cap)
    # the layouts the results carry (all of the manifest's, or a first look's subset), in the manifest's order
    layouts = [n for n in manifest.projections.layouts if n in results[0].layouts] if results else []
    default = manifest.projections.default
    if default not in layouts:
        default = next((n for n in layouts if n.endswith("-2d")), layouts[0] if layouts else default)
    nested = nested_layouts([r.layouts for r in results])
    opts = replace(opts, preview=preview_layout(layouts, default), nested=nested)
    by_layer: dict[int, list[HeadResult]] = {}
    for res in results:
        by_layer.setdefault(res.layer, []).append(res)
    heads_meta = []
    value_dims = 0
    rows = sentence_rows(tok.sentence_id, tok.position)
    for layer, layer_results in sorted(by_layer.items()):
        lc = cap.layer(layer)
        attn = {sid: lc.attention(sid) for sid, _, _ in blocks}
        value_layouts = {r.kv_head: r.value_layouts for r in layer_results if r.value_layouts}
        if value_layouts:
            value_dims = int(lc.v.shape[2])
            by_kv = {kv: values_by_sentence(tok.sentence_id, tok.position, lc.v[:, kv]) for kv in value_layouts}
            outputs = {r.head: token_output_norms(attn, r.head, by_kv[r.kv_head], rows, tok.position, facts.causal,
                                                  opts.key_starts)
                       for r in layer_results if r.kv_head in value_layouts}
            write_layer_values(data_dir, layer, token_value_norms(lc.v), tok.token_id, has_key, value_layouts,
                               outputs, opts.coordinate_bits)
        pictures: dict[int, dict[str, bytes]] = {}
        for res in layer_results:
            sentences = [SentenceAttention(sid, token_ids[sid], attn[sid][res.head]) for sid, _, _ in blocks]
            tiles, pictures[res.head] = write_head_files(data_dir, res.layer, res.head, res.layouts, res.norms,
                                                         sentences, is_key, opts)
            thumbs = {name: head_path("thumb", res.layer, res.head, name) for name in pictures[res.head]
                      if name == opts.preview}
            heads_meta.append({
                "layer": res.layer, "head": res.head, "kv_head": res.kv_head, "thumbs": thumbs, "tiles": tiles,
                "norm": res.normalization,
                "metrics": res.metrics, "label": res.label, "trust": res.trust, "highdim": res.highdim,
                "related": res.related,
            })
            if facts.input_kind == "image":
                heads_meta[-1]["vision"] = res.vision
        ordered = sorted(layer_results, key=lambda r: r.head)
        for name in sorted({n for r in ordered for n in pictures[r.head]}):
            write_bytes(data_dir / STRIP_PATH.format(layer=layer, layout=name),
                        strip_png([pictures[r.head][name] for r in ordered]))
    data = manifest.dataset(spec.dataset)
    info = dataset_info(data)
    dataset = {"name": info.name, "source": info.source, "seed": info.seed, "license": info.license,
               "attribution": info.attribution, "num_sentences": len(blocks), "num_tokens": len(tok.token_id),
               "max_token_repeats": data.max_token_repeats, "num_tokens_with_points": int(has_point.sum())}
    block = block_of(spec)
    sides = {"query_side": QUERY_SIDE[block], "key_side": KEY_SIDE[block]} if cross else {}
    model = {**facts.to_json(), **({"block": block} if block else {}), **sides, "name": spec.name,
             "title": spec.title or spec.name, "source": spec.source,
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
        "unit": unit_slug(spec),  # the unit's path under data/ and models/ (pages link across them)
        "model": model,
        "dataset": dataset,
        "layouts": layouts,
        "default_layout": default,
        "nested_layouts": {name: {"layout": host, "dims": int(results[0].layouts[name].shape[1])}
                           for name, host in nested.items()},
        "scores": for_model(facts.input_kind, cross=cross),
        "colours": colour_manifest(),
        "points": {"count": num_points, **({"queries": num_queries} if cross else {})},
        "thumbnails": {"layouts": [n for n in layouts if n.endswith("-2d")],
                       "size": manifest.export.thumbnail_size, "strips": STRIP_PATH},
        "tokens": {"file": "tokens.arrow", "count": int(len(tok.token_id))},
        "heads": heads_meta,
    }
    if images:
        doc["images"] = images
    doc["inputs"], inputs = export_inputs(manifest, spec, cap, data_dir, blocks, token_ids)
    if any(r.value_layouts for r in results):
        doc["values"] = values_section(results, manifest.projections.layouts, value_dims)
    write_manifest(data_dir, doc)
    return ExportedModel(spec.name, spec.title or spec.name, data_dir, doc, tuple(inputs), spec.dataset, spec.datasets,
                         block)
