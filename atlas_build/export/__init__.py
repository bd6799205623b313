"""Export stage: the schema-versioned files under data/<model>/ that the site reads, and a reader for them."""

from .colours import colour_manifest
from .paths import HEAD_FILES, head_path, layout_file
from .reader import (HeadCoords, Points, coords_header, read_coords, read_head, read_head_attention, read_head_detail,
                     read_json, read_layout, read_manifest, read_norms, read_points, read_table, read_value_coords,
                     read_value_norms)
from .summaries import SentenceAttention, patch_aggregate, relative_aggregate
from .thumbnails import KEY_COLOUR, QUERY_COLOUR, thumbnail_png
from .writer import coords_blob, norms_table, point_ids, quantize, tokens_table, write_coords, write_manifest, write_table

__all__ = [
    "HEAD_FILES", "KEY_COLOUR", "QUERY_COLOUR", "HeadCoords", "Points", "SentenceAttention", "colour_manifest",
    "coords_blob", "coords_header", "head_path", "layout_file", "norms_table", "patch_aggregate", "point_ids", "quantize",
    "read_coords", "read_head", "read_head_attention", "read_head_detail", "read_json", "read_layout", "read_manifest", "read_norms",
    "read_points", "read_table", "read_value_coords", "read_value_norms", "relative_aggregate", "thumbnail_png", "tokens_table", "write_coords",
    "write_manifest", "write_table",
]
