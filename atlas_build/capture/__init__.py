"""Capture stage: load a model from any source and record, per layer and head, the query/key/value vectors exactly as
its attention uses them (post-RoPE, GQA-mapped) plus the model's own attention probabilities, streamed to disk."""

from ..datasets import Sentence
from .facts import ModelFacts, recompute
from .hook import ATTN_NAME, AttentionCall, record_forward, recording
from .run import capture, capture_images, image_preprocessor
from .sources import LoadedModel, load_model, resolve_device
from .store import CaptureResult, LayerCapture, TokenTable, load_capture, read_layer

__all__ = [
    "ATTN_NAME", "AttentionCall", "CaptureResult", "LayerCapture", "LoadedModel", "ModelFacts", "Sentence",
    "TokenTable", "capture", "capture_images", "image_preprocessor", "load_capture", "load_model", "read_layer", "record_forward", "recompute",
    "recording", "resolve_device",
]
