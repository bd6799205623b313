"""Every file of one head: coordinates per layout, norms, attention rows, aggregate pattern, thumbnails and
(large heads) tile pyramids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..fsutil import write_json
from .paths import head_path
from .summaries import SentenceAttention, key_position_aggregate, patch_aggregate, relative_aggregate
from .thumbnails import write_thumbnail
from .tiles import write_tiles, zoom_levels
from .writer import coords_table, norms_table, write_attention, write_table


@dataclass(frozen=True)
class HeadFileOptions:
    """What the model and the build decide for every head's files."""

    causal: bool
    thumbnail_size: int
    tile_threshold: int
    patch_grid: tuple[int, int] | None = None  # image models: (rows, cols) of patches
    num_prefix_tokens: int = 0
    key_starts: Mapping[int, int] | None = None  # cross-attention: input id → position of its first key-side token


def sentence_token_ids(token_id: np.ndarray, sentence_id: np.ndarray, position: np.ndarray) -> dict[int, np.ndarray]:
    """sentence_id → its token ids ordered by position."""
    order = np.lexsort((position, sentence_id))
    sids, ordered = sentence_id[order], token_id[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    return {int(sids[s]): ordered[s:e] for s, e in zip(starts, np.r_[starts[1:], len(order)])}


def write_head_files(data_dir: Path, layer: int, head: int, layouts: Mapping[str, np.ndarray], norms: np.ndarray,
                     sentences: Sequence[SentenceAttention], is_key: np.ndarray, opts: HeadFileOptions) -> dict:
    """Write the head's files (rows of per-point files in ascending point id order); returns its `tiles` record."""
    for name, coords in sorted(layouts.items()):
        write_table(data_dir / head_path("coords", layer, head, name), coords_table(coords, layer, head, name))
    write_table(data_dir / head_path("norms", layer, head), norms_table(norms, layer, head))
    write_attention(data_dir / head_path("attn", layer, head),
                    [(s.sentence_id, int(s.token_ids[0]), s.probs) for s in sentences])
    if opts.key_starts is not None:
        aggregate = key_position_aggregate(sentences, opts.key_starts, layer, head)
    elif opts.patch_grid:
        aggregate = patch_aggregate(sentences, opts.patch_grid, opts.num_prefix_tokens, layer, head)
    else:
        aggregate = relative_aggregate(sentences, opts.causal, layer, head)
    write_json(data_dir / head_path("aggregate", layer, head), aggregate)
    tiles = {}
    for name, coords in sorted(layouts.items()):
        if coords.shape[1] != 2:
            continue
        write_thumbnail(data_dir / head_path("thumb", layer, head, name), coords, is_key, opts.thumbnail_size)
        if len(coords) > opts.tile_threshold:
            rel = head_path("tiles", layer, head, name)
            tiles[name] = {"dir": rel, **write_tiles(data_dir / rel, coords, is_key, zoom_levels(len(coords)))}
    return tiles
