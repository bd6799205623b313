"""The score registry: every per-head score, its unit or range, whether it applies to text or image models, and its
definition. Adding a score is one entry here plus the code computing it and a test: `head_scores` refuses a score
that is not registered (none is silently dropped), manifest.json lists the registry for the matrix view's sort menu,
and the score table of docs/reference/head-labels.md is checked against `score_table()`.

``group`` names the computation that yields the score (several scores come from one pass over the attention):
``attention`` (the attention rows), ``geometry`` (query/key vectors), ``weights`` (W_Q, W_K), ``values`` (value
vectors), ``vision`` (the head's 2D layouts of probe images).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..fsutil import round6


@dataclass(frozen=True)
class Score:
    name: str
    label: str
    unit: str
    applies: str  #: "text", "image" or "both"
    group: str
    doc: str
    cross: bool = True  #: defined for cross-attention heads (queries and keys from different sequences)


SCORES: tuple[Score, ...] = (
    Score("first_token", "first token", "[0, 1]", "both", "attention", "mean attention to position 0"),
    Score("previous_token", "previous token", "[0, 1]", "both", "attention", "mean attention to position i − 1", cross=False),
    Score("self", "self", "[0, 1]", "both", "attention", "mean attention to position i", cross=False),
    Score("same_token", "same token", "[0, 1]", "text", "attention",
          "mean attention to other allowed positions with the same vocabulary id, over rows that have one (needs "
          "token ids)"),
    Score("mean_distance", "mean distance", "tokens, ≥ 0", "both", "attention",
          "mean Σⱼ Aᵢⱼ·\\|i − j\\|; for images the patch-centre distance in patches, over patch queries and patch "
          "keys only (CLS and registers dropped, rows re-normalised over patches)", cross=False),
    Score("locality", "locality", "[−1, 1]", "both", "attention",
          "1 − `mean_distance` / (mean distance of uniform attention over the same allowed keys); 0 = uniform, "
          "1 = on the diagonal", cross=False),
    Score("entropy", "entropy", "[0, 1]", "both", "attention",
          "mean row entropy divided by log(number of keys the row may attend to: i + 1 causal, n bidirectional)"),
    Score("position_concentration", "position concentration", "[−1, 1]", "both", "geometry",
          "mean cosine similarity (after centring the query set, and separately the key set) of tokens at the "
          "same position, minus the mean over all pairs; average of queries and keys"),
    Score("token_concentration", "token concentration", "[−1, 1]", "text", "geometry",
          "the same with groups = vocabulary id: how concentrated the search hits for one token are"),
    Score("positional_vs_semantic", "positional vs semantic", "[−1, 1]", "text", "geometry",
          "(pos − tok) / (\\|pos\\| + \\|tok\\|) of the two above: +1 positional, −1 semantic"),
    Score("wq_wk_correlation", "W_Q–W_K correlation", "[−1, 1]", "both", "weights",
          "Pearson correlation of the flattened W_Q and W_K of the head (paper: 0.94 for a ViT \"look at self\" "
          "head); only when weights are given"),
    Score("value_norm", "value norm", "≥ 0", "both", "values", "mean ‖v‖ of the value vectors the head reads"),
    Score("first_token_output_share", "first-token output share", "[0, 1]", "both", "values",
          "mean Aᵢ₀‖v₀‖ / Σⱼ Aᵢⱼ‖vⱼ‖ (rows at position ≥ 2): the first token's share of the head's output, each "
          "key's contribution measured by the norm of Aᵢⱼvⱼ; well below `first_token` = a sink with a small value"),
    Score("output_norm_ratio", "output norm ratio", "[0, 1]", "both", "values",
          "mean ‖Σⱼ Aᵢⱼvⱼ‖ / Σⱼ Aᵢⱼ‖vⱼ‖ (rows with ≥ 2 allowed keys): 1 = the mixed values point one way (or one "
          "key takes all), near 0 = they cancel"),
    Score("attended_value_norm", "attended value norm", "≥ 0", "both", "values",
          "mean Σⱼ Aᵢⱼ‖vⱼ‖ ÷ the mean ‖vⱼ‖ of the row's allowed keys (rows with ≥ 2): > 1 the head reads tokens "
          "with large values, < 1 it parks attention on small ones"),
    Score("hue_sorting", "hue sorting", "≤ 1", "image", "vision",
          "how strongly the 2D layouts order hue-probe patches by hue across images (mean over 2D layouts)"),
    Score("brightness_sorting", "brightness sorting", "≤ 1", "image", "vision",
          "the same for brightness probes and their brightness"),
    Score("grating_frequency_sorting", "grating frequency sorting", "≤ 1", "image", "vision",
          "the same for grating probes and their spatial frequency"),
    Score("grating_angle_sorting", "grating angle sorting", "≤ 1", "image", "vision",
          "the same for grating probes and their angle"),
)
BY_NAME = {s.name: s for s in SCORES}
SCORE_NAMES: tuple[str, ...] = tuple(BY_NAME)


def ordered(values: dict[str, float]) -> dict[str, float]:
    """Scores in registry order; an unregistered name is an error, not silently dropped."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise KeyError(f"scores not in atlas_build.metrics.registry.SCORES: {', '.join(unknown)}")
    return {name: values[name] for name in SCORE_NAMES if name in values}


def rounded(values: dict[str, float | None]) -> dict[str, float]:
    """Finite values rounded by `round6`, in key order; None and non-finite values are left out."""
    return {k: round6(v) for k, v in sorted(values.items()) if v is not None and np.isfinite(v)}


def for_model(kind: str, cross: bool = False) -> list[dict]:
    """The registry as manifest.json lists it for a text or image model, or a cross-attention block (``cross``):
    what the matrix view's sort menu shows."""
    return [{k: v for k, v in asdict(s).items() if k not in ("group", "cross")} for s in SCORES
            if s.applies in ("both", kind) and (s.cross or not cross)]


def score_table() -> list[str]:
    """The rows of the score table in docs/reference/head-labels.md (attention, geometry, weights, values)."""
    return [f"| `{s.name}` | {s.unit} | {s.doc} |" for s in SCORES if s.group != "vision"]
