"""The site's colours, defined once: the query and key colours and the ramps of the views' colourings.

The thumbnails and tiles are shaded with QUERY and KEY here; every model's manifest.json carries
`colour_manifest()` as `colours`, from which the views (colours.js) draw their points and set atlas.css's
`--atlas-query` / `--atlas-key`.
"""

from __future__ import annotations

QUERY = "#1b9e77"
KEY = "#e7298a"

#: Light → dark per kind: the position colouring (queries green, keys pink).
QUERY_RAMP = ("#c7e9c0", "#41ab5d", "#00441b")
KEY_RAMP = ("#fcc5e0", "#dd3497", "#49006a")
#: Sequential ramps: norm, token frequency, sentence length and patch column (viridis); patch row (plasma);
#: mean brightness (greys, dark → bright).
VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
PLASMA = ("#0d0887", "#7e03a8", "#cc4778", "#f89540", "#f0f921")
GREYS = ("#181818", "#e8e8e8")
#: Position mod 5, one colour per residue.
MOD5 = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
PUNCTUATION = "#e6ab02"
#: Everything else: non-punctuation tokens, CLS/register tokens, patches without a value.
OTHER = "#9e9e9e"


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of a "#rrggbb" colour."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def colour_manifest() -> dict:
    """The `colours` entry of manifest.json: every colour as "#rrggbb", ramps as lists of stops."""
    return {"query": QUERY, "key": KEY, "query_ramp": list(QUERY_RAMP), "key_ramp": list(KEY_RAMP),
            "viridis": list(VIRIDIS), "plasma": list(PLASMA), "greys": list(GREYS), "mod5": list(MOD5),
            "punctuation": PUNCTUATION, "other": OTHER}
