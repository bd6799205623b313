"""The site's colours are defined once, in atlas_build/export/colours.py: the thumbnails shade with them, every
manifest.json carries them, and the views' sources name none of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from atlas_build.export import KEY_COLOUR, QUERY_COLOUR, colour_manifest, colours

ASSETS = Path(__file__).resolve().parents[1] / "site_templates" / "assets" / "atlas"
HEX = re.compile(r"^#[0-9a-f]{6}$")


def test_colour_manifest_is_json_of_hex_colours():
    doc = json.loads(json.dumps(colour_manifest()))
    assert doc["query"] == QUERY_COLOUR == colours.QUERY and doc["key"] == KEY_COLOUR == colours.KEY
    for name, value in doc.items():
        for colour in value if isinstance(value, list) else [value]:
            assert HEX.match(colour), (name, colour)
    assert len(doc["mod5"]) == 5 and all(len(doc[r]) >= 2 for r in ("query_ramp", "key_ramp", "viridis", "greys"))
    assert colours.hex_rgb("#1b9e77") == (0x1B, 0x9E, 0x77)


def test_views_define_no_query_or_key_colour_of_their_own():
    for path in [*ASSETS.glob("*.js"), ASSETS / "atlas.css"]:
        text = path.read_text("utf-8").lower()
        rgb = "0x%02x, 0x%02x, 0x%02x"
        for colour in (colours.QUERY, colours.KEY):
            assert colour not in text and rgb % colours.hex_rgb(colour) not in text, (path.name, colour)
