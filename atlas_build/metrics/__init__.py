"""Per-head measures: behaviour scores, an automatic label, layout trust and head-to-head similarity.

See ``docs/reference/head-labels.md`` for the score definitions and the label thresholds.
"""

from __future__ import annotations

from .labels import FALLBACK_LABEL, LABEL_RULES, LABELS, Condition, LabelRule, label_head
from .scores import SCORE_NAMES, attention_scores, concentration, head_scores
from .trust import head_similarity, similarity_matrix, trust_scores

__all__ = ["head_scores", "attention_scores", "concentration", "SCORE_NAMES", "label_head", "LABEL_RULES", "LABELS",
           "FALLBACK_LABEL", "Condition", "LabelRule", "trust_scores", "head_similarity", "similarity_matrix"]
