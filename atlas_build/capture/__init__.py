"""Capture stage: load a model from any source and record, per layer and head, the query/key/value vectors exactly as
its attention uses them (post-RoPE, GQA-mapped) plus the model's own attention probabilities, streamed to disk."""

from ..datasets import Sentence
from .attention_math import recompute
from .facts import ModelFacts
from .run import capture, capture_images, image_preprocessor
from .sources import LoadedModel, load_model
from .store import CaptureResult, load_capture, read_layer

__all__ = [
    "CaptureResult", "LoadedModel", "ModelFacts", "Sentence", "capture", "capture_images", "image_preprocessor",
    "load_capture", "load_model", "read_layer", "recompute",
]
