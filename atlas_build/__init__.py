"""Attention Atlas: build static, browsable atlases of transformer attention heads (AttentionViz)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 3
