"""Export stage: the schema-versioned files under data/<model>/ that the site reads, and a reader for them."""

from .reader import HeadCoords, read_attention, read_head, read_manifest, read_table
from .thumbnails import KEY_COLOUR, QUERY_COLOUR, thumbnail_png, write_thumbnail
from .writer import (attention_blob, head_table, points_table, quantize, tokens_table, write_attention,
                     write_manifest, write_table)

__all__ = [
    "HeadCoords", "KEY_COLOUR", "QUERY_COLOUR", "attention_blob", "head_table", "points_table", "quantize",
    "read_attention", "read_head", "read_manifest", "read_table", "thumbnail_png", "tokens_table",
    "write_attention", "write_manifest", "write_table", "write_thumbnail",
]
