"""Per-head measures: behaviour scores, an automatic label, layout trust and related heads.

See ``docs/reference/head-labels.md`` for the score definitions, the label thresholds and related heads.
"""

from __future__ import annotations

from .labels import FALLBACK_LABEL, LABEL_RULES, LABELS, Condition, LabelRule, label_head
from .related import (
    SignaturePlan,
    attention_signature,
    head_similarity,
    related_heads,
    signature_plan,
    similarity_matrix,
)
from .scores import SCORE_NAMES, attention_scores, concentration, head_scores
from .trust import LayoutTrust, trust_scores

__all__ = ["head_scores", "attention_scores", "concentration", "SCORE_NAMES", "label_head", "LABEL_RULES", "LABELS",
           "FALLBACK_LABEL", "Condition", "LabelRule", "LayoutTrust", "trust_scores", "SignaturePlan", "signature_plan",
           "attention_signature", "head_similarity", "similarity_matrix", "related_heads"]
