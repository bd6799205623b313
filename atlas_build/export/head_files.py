"""Every file of one head: coordinates per layout, norms, aggregate pattern, the default layout's thumbnail and
(large heads) tile pyramids. Its attention rows live in the per-input files (`pipeline.export_inputs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..fsutil import write_bytes, write_json
from .paths import head_path
from .summaries import SentenceAttention, key_position_aggregate, patch_aggregate, relative_aggregate
from .thumbnails import thumbnail_png
from .tiles import write_tiles, zoom_levels
from .writer import COORD_BITS, norms_table, write_coords, write_table


@dataclass(frozen=True)
class HeadFileOptions:
    """What the model and the build decide for every head's files."""

    causal: bool
    thumbnail_size: int
    tile_threshold: int
    patch_grid: tuple[int, int] | None = None  # image models: (rows, cols) of patches
    num_prefix_tokens: int = 0
    key_starts: Mapping[int, int] | None = None  # cross-attention: input id → position of its first key-side token
    coordinate_bits: int = COORD_BITS
    #: The 2D layout whose thumbnail is also a file of its own (`thumbnails.preview_layout`: the head page's preview
    #: image); every 2D layout's lives in its layer's strip.
    preview: str | None = None
    #: Layouts stored in another layout's file (`project.nested_layouts`): no coordinates file of their own.
    nested: Mapping[str, str] = field(default_factory=dict)


def sentence_token_ids(token_id: np.ndarray, sentence_id: np.ndarray, position: np.ndarray) -> dict[int, np.ndarray]:
    """sentence_id → its token ids ordered by position."""
    order = np.lexsort((position, sentence_id))
    sids, ordered = sentence_id[order], token_id[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    return {int(sids[s]): ordered[s:e] for s, e in zip(starts, np.r_[starts[1:], len(order)])}


def write_head_files(data_dir: Path, layer: int, head: int, layouts: Mapping[str, np.ndarray], norms: np.ndarray,
                     sentences: Sequence[SentenceAttention], is_key: np.ndarray,
                     opts: HeadFileOptions) -> tuple[dict, dict[str, bytes]]:
    """Write the head's files (rows of per-point files in ascending point id order); returns its `tiles` record and
    the PNG thumbnail of each 2D layout (for its layer's strip)."""
    for name, coords in sorted(layouts.items()):
        if name in opts.nested:
            continue
        write_coords(data_dir / head_path("coords", layer, head, name), coords, layer, head, name, opts.coordinate_bits)
    write_table(data_dir / head_path("norms", layer, head), norms_table(norms, layer, head))
    if opts.key_starts is not None:
        aggregate = key_position_aggregate(sentences, opts.key_starts, layer, head)
    elif opts.patch_grid:
        aggregate = patch_aggregate(sentences, opts.patch_grid, opts.num_prefix_tokens, layer, head)
    else:
        aggregate = relative_aggregate(sentences, opts.causal, layer, head)
    write_json(data_dir / head_path("aggregate", layer, head), aggregate)
    tiles, thumbs = {}, {}
    for name, coords in sorted(layouts.items()):
        if coords.shape[1] != 2:
            continue
        thumbs[name] = thumbnail_png(coords, is_key, opts.thumbnail_size)
        if name == opts.preview:
            write_bytes(data_dir / head_path("thumb", layer, head, name), thumbs[name])
        if len(coords) > opts.tile_threshold:
            rel = head_path("tiles", layer, head, name)
            tiles[name] = {"dir": rel, **write_tiles(data_dir / rel, coords, is_key, zoom_levels(len(coords)))}
    return tiles, thumbs
