"""Load an encoder–decoder model (with its language-model head, so targets can be generated) and probe its blocks.

The model class comes from transformers' own tables: the sequence-to-sequence LM mapping for text encoders, the
speech sequence-to-sequence mapping for audio encoders, else the bare model (which cannot generate: its datasets
must give targets). Sources are those of `sources` (``random:``, a local directory, ``package:``, a hub id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from ..manifest import ModelSpec
from . import hook
from .encdec import EncDecFacts, probe_encdec
from .sources import DTYPES, _from_pretrained, load_tokenizer, resolve, resolve_device, unknown_model_type

#: (mapping of model types in transformers.models.auto.modeling_auto, the Auto class that loads it), in order.
GENERATION_CLASSES = (("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "AutoModelForSeq2SeqLM"),
                      ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "AutoModelForSpeechSeq2Seq"))


@dataclass
class LoadedEncDec:
    """A loaded encoder–decoder model: ``modules`` maps id(attention module) → (block, layer within block)."""

    model: nn.Module
    tokenizer: Any
    feature_extractor: Any
    facts: EncDecFacts
    modules: dict[int, tuple[str, int]]
    source: str
    revision: str
    can_generate: bool


def model_class(model_type: str) -> tuple[Any, bool]:
    """(the Auto class that loads ``model_type`` with an LM head, True) or (AutoModel, False)."""
    import transformers
    from transformers.models.auto import modeling_auto

    for table, cls in GENERATION_CLASSES:
        if model_type in getattr(modeling_auto, table, {}):
            return getattr(transformers, cls), True
    return transformers.AutoModel, False


def is_encoder_decoder(config: Any) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def reads_audio(config: Any) -> bool:
    """Whether the model type's generation class is the speech one (its encoder reads audio features)."""
    from transformers.models.auto import modeling_auto

    return str(getattr(config, "model_type", "")) in getattr(modeling_auto, GENERATION_CLASSES[1][0], {})


def random_feature_extractor(model_type: str, model: nn.Module) -> Any:
    """The model type's feature extractor class with default settings and the encoder's mel-bin count."""
    import transformers
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING_NAMES

    from .encdec import audio_shape

    name = FEATURE_EXTRACTOR_MAPPING_NAMES.get(model_type)
    if not name:
        raise SourceError(f"random:{model_type}", "no feature extractor is known for this model type")
    return getattr(transformers, name)(feature_size=audio_shape(model)[0])


def _build_random(spec: ModelSpec, base_dir: Path, dtype: torch.dtype) -> tuple[nn.Module, Any, Any, bool]:
    from transformers import CONFIG_MAPPING, AutoConfig

    model_type = spec.source[len("random:"):]
    if model_type not in CONFIG_MAPPING:
        raise SourceError(spec.source, unknown_model_type(model_type))
    tokenizer = load_tokenizer(spec.tokenizer, base_dir) if spec.tokenizer else None
    cfg = spec.config_dict()
    if tokenizer is not None and "vocab_size" not in cfg:
        cfg["vocab_size"] = len(tokenizer)
    try:
        config = AutoConfig.for_model(model_type, **cfg)
    except (ValueError, TypeError) as e:
        raise SourceError(spec.source, f"invalid config: {str(e).splitlines()[0][:200]}") from None
    cls, generates = model_class(model_type)
    torch.manual_seed(spec.seed)
    try:
        model = cls.from_config(config, dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise SourceError(spec.source, f"cannot build {model_type!r} from its config: {e}") from None
    extractor = random_feature_extractor(model_type, model) if reads_audio(config) else None
    return model, tokenizer, extractor, generates


def _load_stored(spec: ModelSpec, base_dir: Path, dtype: torch.dtype) -> tuple[nn.Module, Any, Any, bool, str]:
    from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer

    res = resolve(spec.source, base_dir, spec.gguf_file, spec.revision)
    config = _from_pretrained(spec.source, res, AutoConfig)
    cls, generates = model_class(str(getattr(config, "model_type", "")))
    model = _from_pretrained(spec.source, res, cls, dtype=dtype, **spec.config_dict())
    tokenizer = load_tokenizer(spec.tokenizer, base_dir) if spec.tokenizer else \
        _from_pretrained(spec.source, res, AutoTokenizer)
    extractor = _from_pretrained(spec.source, res, AutoFeatureExtractor) if reads_audio(config) else None
    return model, tokenizer, extractor, generates, res.revision


def load_encdec(spec: ModelSpec, base_dir: Path, device: str = "auto") -> LoadedEncDec:
    """Load the encoder–decoder model ``spec`` names (eval mode, capturing attention installed) and probe it."""
    dev = resolve_device(device)
    dtype = DTYPES[spec.dtype]
    if spec.source.startswith("random:"):
        model, tokenizer, extractor, generates = _build_random(spec, base_dir, dtype)
        revision = f"random seed {spec.seed}"
    else:
        model, tokenizer, extractor, generates, revision = _load_stored(spec, base_dir, dtype)
    if not is_encoder_decoder(model.config):
        raise SourceError(spec.source, "not an encoder–decoder model: it has no cross-attention")
    if tokenizer is None:
        raise SourceError(spec.source, "an encoder–decoder model needs a tokenizer for its decoder's text")
    model = model.to(dev).eval()
    try:
        hook.install(model)
    except Exception as e:  # noqa: BLE001
        raise SourceError(spec.source, f"unsupported architecture: cannot switch attention: {e}") from None
    try:
        modules, facts = probe_encdec(model, tokenizer, dev, extractor)
    except SourceError as e:
        raise SourceError(spec.source, e.reason) from None
    return LoadedEncDec(model, tokenizer, extractor, facts, modules, spec.source, revision, generates)
