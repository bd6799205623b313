"""Encoder–decoder problems `atlas validate` finds without loading weights: a model without cross-attention given
pairs, an encoder–decoder model given single texts or images, an audio model without audio (and the converse),
a pairs file without its target field, a generated target with no language-model head, and pairs or clips longer
than the model reads. Each problem is one line naming the model or dataset key at fault.

Only configs, tokenizers and data files are read; an audio encoder's shape (its convolution front end) comes from
the model built on PyTorch's ``meta`` device, which allocates no weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..manifest import DatasetSpec, Manifest, ModelSpec

ENCDEC_KINDS = ("pairs", "audio")
#: Config attributes of the encoder's and decoder's layer and head counts and the width (first present wins).
ENCODER_LAYERS = ("encoder_layers", "num_layers", "num_hidden_layers")
DECODER_LAYERS = ("decoder_layers", "num_decoder_layers", "num_layers", "num_hidden_layers")
ENCODER_HEADS = ("encoder_attention_heads", "num_heads", "num_attention_heads")
DECODER_HEADS = ("decoder_attention_heads", "num_heads", "num_attention_heads")
WIDTH = ("d_model", "hidden_size")


def block_shape(config: Any) -> tuple[int, int, int] | None:
    """(layers over the three blocks, heads per layer, width) of an encoder–decoder config: the encoder's layers
    plus twice the decoder's (self- and cross-attention); None when the config does not say or the head counts
    differ between encoder and decoder."""
    from .encdec import first_int

    enc, dec = first_int((config,), ENCODER_LAYERS), first_int((config,), DECODER_LAYERS)
    h_enc, h_dec = first_int((config,), ENCODER_HEADS), first_int((config,), DECODER_HEADS)
    width = first_int((config,), WIDTH)
    if None in (enc, dec, h_enc, width) or h_enc != h_dec:
        return None
    return enc + 2 * dec, h_enc, width


def stack_kind(config: Any) -> str:
    """"encoder–decoder", "decoder-only" or "encoder-only", from the config and transformers' model tables."""
    from transformers.models.auto import modeling_auto as auto

    if getattr(config, "is_encoder_decoder", False):
        return "encoder–decoder"
    t = str(getattr(config, "model_type", ""))
    decoder = t in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and t not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "decoder-only" if decoder or getattr(config, "is_decoder", False) else "encoder-only"


def audio_window_seconds(config: Any, extractor: Any) -> float:
    """Seconds of audio the encoder reads: positions × frames per position × hop / sampling rate."""
    import torch

    from .encdec import audio_shape
    from .encdec_sources import model_class

    cls, _ = model_class(str(config.model_type))
    with torch.device("meta"):
        model = cls.from_config(config)
    _, frames, positions = audio_shape(model)
    return positions * frames * int(extractor.hop_length) / int(extractor.sampling_rate)


def _tokenizer(spec: ModelSpec, base_dir: Path) -> Any:
    from .sources import _from_pretrained, load_tokenizer, resolve
    from transformers import AutoTokenizer

    if spec.tokenizer:
        return load_tokenizer(spec.tokenizer, base_dir)
    return _from_pretrained(spec.source, resolve(spec.source, base_dir, spec.gguf_file, spec.revision),
                            AutoTokenizer)


def _extractor(spec: ModelSpec, base_dir: Path, config: Any) -> Any:
    import transformers
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING_NAMES

    from .sources import _from_pretrained, resolve

    if spec.source.startswith("random:"):
        return getattr(transformers, FEATURE_EXTRACTOR_MAPPING_NAMES[config.model_type])()
    where = resolve(spec.source, base_dir, spec.gguf_file, spec.revision)
    return _from_pretrained(spec.source, where, transformers.AutoFeatureExtractor)


def _lengths(data: DatasetSpec, spec: ModelSpec, base_dir: Path, config: Any, tokenizer: Any) -> Iterator[str]:
    """Problems of the pairs (or clips) the capture would read first, in order, until the token budget."""
    from .encdec import DECODER_LIMIT_ATTRS, ENCODER_LIMIT_ATTRS, config_limit
    from .encdec_inputs import tokenizer_limit

    tok_limit = tokenizer_limit(tokenizer)
    enc_limit = config_limit(config, ENCODER_LIMIT_ATTRS) or tok_limit
    dec_limit = config_limit(config, DECODER_LIMIT_ATTRS) or tok_limit
    if dec_limit and not (data.target_field or data.targets) and data.max_target_tokens > dec_limit:
        yield (f"max_target_tokens = {data.max_target_tokens} is more than model {spec.name!r} can decode "
               f"({dec_limit} tokens)")
    if data.kind == "audio":
        from ..datasets.audio import load_clips

        window = audio_window_seconds(config, _extractor(spec, base_dir, config))
        for c in load_clips(data, base_dir):
            if c.seconds > window + 1e-9:
                yield (f"clip {c.clip_id} ({c.name!r}) lasts {c.seconds:.2f} s; model {spec.name!r} reads at most "
                       f"{window:.2f} s: shorten or drop it")
                return
        return
    from ..datasets.pairs import load_pairs

    total = 0
    for p in load_pairs(data, base_dir):
        n_src = len(tokenizer(p.source)["input_ids"])
        n_tgt = 1 + len(tokenizer(text_target=p.target)["input_ids"]) if p.target is not None else 0
        for n, limit, side in ((n_src, enc_limit, "encoder"), (n_tgt, dec_limit, "decoder")):
            if limit and n > limit:
                yield (f"pair {p.pair_id} ({p.source[:40]!r}) has {n} {side} tokens; model {spec.name!r} reads at "
                       f"most {limit} (its position table): shorten or drop it")
                return
        total += n_src + (n_tgt or data.max_target_tokens)
        if total > data.max_tokens:
            return


def model_problems(manifest: Manifest, index: int, spec: ModelSpec, config: Any) -> Iterator[tuple[str, str]]:
    """(key, message) of every encoder–decoder problem of one model (config known) on each of its datasets."""
    from .encdec_sources import model_class, reads_audio

    kind = stack_kind(config)
    names = [d.name for d in manifest.datasets]
    model_key = f"models[{index}]"
    for name in spec.all_datasets:
        data = manifest.dataset(name)
        key = f"datasets[{names.index(name)}]"
        if data.kind in ENCDEC_KINDS and kind != "encoder–decoder":
            yield model_key, (f"{spec.source} is {'a' if kind[0] == 'd' else 'an'} {kind} model: it has no "
                              f"cross-attention for the {data.kind} of dataset {name!r} (use an encoder–decoder "
                              "model such as T5, BART, Marian or Whisper)")
            continue
        if kind != "encoder–decoder":
            continue
        audio = reads_audio(config)
        if data.kind not in ENCDEC_KINDS:
            yield model_key, (f"{spec.source} is an encoder–decoder model: dataset {name!r} (kind {data.kind!r}) "
                              f"gives it no pairs; use a dataset of kind {'audio' if audio else 'pairs'!r}")
            continue
        if audio and data.kind != "audio":
            yield model_key, (f"{spec.source} is an audio model and dataset {name!r} has no audio (kind "
                              f"{data.kind!r}); use a dataset of kind 'audio'")
            continue
        if not audio and data.kind == "audio":
            yield model_key, (f"{spec.source} reads text, not the audio of dataset {name!r}; use a dataset of "
                              "kind 'pairs'")
            continue
        generates = data.target_field == "" and not data.targets
        if generates and not model_class(str(config.model_type))[1]:
            yield key, (f"no target_field: targets would be generated, but model {spec.name!r} has no "
                        "language-model head; name the target field")
        try:
            tokenizer = _tokenizer(spec, manifest.base_dir)
            for message in _lengths(data, spec, manifest.base_dir, config, tokenizer):
                yield key, message
        except InputError as e:
            yield key, str(e)


def encdec_problems(manifest: Manifest, configs: dict[str, Any]) -> list[tuple[str, str]]:
    """Every encoder–decoder problem of the manifest's models whose config is known (None: not read, or failed)."""
    return [problem for i, spec in enumerate(manifest.models) if configs.get(spec.name) is not None
            for problem in model_problems(manifest, i, spec, configs[spec.name])]
