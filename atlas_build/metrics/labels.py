"""One automatic behaviour label per head, from its scores, by a single ordered rule table.

The table is documented (and must be kept in sync) in ``docs/reference/head-labels.md``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["Condition", "LabelRule", "LABEL_RULES", "FALLBACK_LABEL", "LABELS", "label_head"]


class Condition(NamedTuple):
    score: str
    op: str          # ">=" or "<="
    threshold: float


class LabelRule(NamedTuple):
    label: str
    any_of: tuple[Condition, ...]  # the rule matches when at least one condition holds
    why: str


_OPS = {">=": operator.ge, "<=": operator.le}

#: Ordered: the first matching rule gives the label. A missing or non-finite score never satisfies a condition.
LABEL_RULES: tuple[LabelRule, ...] = (
    LabelRule("first-token sink", (Condition("first_token", ">=", 0.4),),
              "two fifths or more of the attention goes to position 0 (attention sink / [CLS])"),
    LabelRule("previous-token", (Condition("previous_token", ">=", 0.5),),
              "half or more of the attention goes to the token just before"),
    LabelRule("self", (Condition("self", ">=", 0.5),),
              "half or more of the attention stays on the token itself"),
    LabelRule("same-token", (Condition("same_token", ">=", 0.4),),
              "much of the attention goes to earlier/other occurrences of the same token (duplicate-token heads)"),
    LabelRule("broad", (Condition("entropy", ">=", 0.75),),
              "attention spread over many of the allowed keys"),
    LabelRule("positional", (Condition("locality", ">=", 0.3), Condition("position_concentration", ">=", 0.5),
                             Condition("positional_vs_semantic", ">=", 0.5)),
              "attention favours nearby keys, or queries/keys are organised by position rather than token"),
    LabelRule("semantic", (Condition("positional_vs_semantic", "<=", -0.5),),
              "queries/keys of the same token cluster together regardless of position"),
)
FALLBACK_LABEL = "mixed"
LABELS: tuple[str, ...] = tuple(r.label for r in LABEL_RULES) + (FALLBACK_LABEL,)


def _holds(cond: Condition, scores: Mapping[str, float]) -> bool:
    v = scores.get(cond.score)
    if v is None or not np.isfinite(v):
        return False
    return bool(_OPS[cond.op](float(v), cond.threshold))


def label_head(scores: Mapping[str, float]) -> str:
    """The first rule of `LABEL_RULES` whose conditions (any of them) hold; otherwise ``"mixed"``."""
    for rule in LABEL_RULES:
        if any(_holds(c, scores) for c in rule.any_of):
            return rule.label
    return FALLBACK_LABEL
