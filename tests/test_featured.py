"""Featured inputs and the per-input exports: manifest validation (exit 2 naming the entry from validate and build),
resolution by id or text, the model view's per-input attention files (the same weights as the per-head files) and
the neuron view's q/k vectors (the capture's own, post-RoPE, GQA key heads shared; softmax of their scaled dot
products is the model's attention)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from atlas_build.capture import load_capture, read_layer
from atlas_build.errors import ManifestError
from atlas_build.export import read_manifest
from atlas_build.export.inputs import input_blob, read_input_attention, read_vectors, vector_blob
from atlas_build.featured import DEFAULT_FEATURED, SampleInput, featured_ids, match, resolve
from atlas_build.manifest import MAX_FEATURED, parse_manifest
from atlas_build.pipeline import build
from hostile_util import TINY, Sandbox

HOSTILE = "<img src=x onerror=alert(1)>"
GOOD = {
    "datasets": [{"name": "d", "source": "inline", "sentences": ["One sentence.", "Paris is big."]}],
    "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:tok", "dataset": "d"}],
}
GQA = TINY.replace('name = "tiny-bert"', 'name = "tiny-llama"').replace("random:bert", "random:llama").replace(
    "num_attention_heads = 4,", "num_attention_heads = 4, num_key_value_heads = 2,").replace(
    'seed = 0\nconfig', 'seed = 0\nfeatured = ["PARIS", 1]\nconfig').replace(
    'layouts = ["pca-2d", "tsne-2d"]', 'layouts = ["pca-2d"]')


def _model(**extra) -> dict:
    doc = json.loads(json.dumps(GOOD))
    doc["models"][0].update(extra)
    return doc


def _problems(doc: dict) -> list[str]:
    with pytest.raises(ManifestError) as e:
        parse_manifest(doc, "x.toml")
    return [str(p) for p in e.value.problems]


def test_featured_parses_ids_and_texts_and_defaults_to_none() -> None:
    assert parse_manifest(GOOD, "x.toml").models[0].featured is None
    assert parse_manifest(_model(featured=[3, "Paris"]), "x.toml").models[0].featured == (3, "Paris")
    assert parse_manifest(_model(featured=[]), "x.toml").models[0].featured == ()


@pytest.mark.parametrize(("value", "key", "expect"), [
    ("Paris", "models[0].featured", "expected a list of input ids and texts"),
    (list(range(MAX_FEATURED + 1)), f"models[0].featured[{MAX_FEATURED}]", f"at most {MAX_FEATURED} per model"),
    ([1, "a", 1], "models[0].featured[2]", "repeats featured[0]"),
    ([0, "  "], "models[0].featured[1]", "expected an input id or a text to match"),
    ([True], "models[0].featured[0]", "expected an integer"),
    ([-1], "models[0].featured[0]", "expected an integer from 0"),
    ([1.5], "models[0].featured[0]", "expected an integer"),
])
def test_bad_featured_lists_name_the_entry(value, key: str, expect: str) -> None:
    problems = _problems(_model(featured=value))
    assert len(problems) == 1 and f"x.toml: {key}: " in problems[0] and expect in problems[0], problems


def test_entries_match_by_id_or_first_text_containing_them() -> None:
    inputs = [SampleInput(0, "The cat sat."), SampleInput(1, "Paris is big."), SampleInput(2, "Big paris.")]
    assert match(1, inputs) == 1 and match(7, inputs) is None
    assert match("paris", inputs) == 1 and match("BIG P", inputs) == 2 and match("dog", inputs) is None
    data = parse_manifest(GOOD, "x.toml").datasets[0]
    ids, problems = resolve(["big paris", 0, "cat", "dog"], inputs, data, "models[0].featured")
    assert ids == [2, 0]
    assert [k for k, _ in problems] == ["models[0].featured[2]", "models[0].featured[3]"]
    assert "names sentence 0 again (featured[1])" in problems[0][1] and "'dog' matches no sentence" in problems[1][1]


def test_default_is_a_seeded_handful_of_captured_inputs() -> None:
    manifest = parse_manifest(GOOD, "x.toml")
    captured = list(range(50))
    first = featured_ids(manifest, manifest.models[0], captured, seed=0)
    assert len(first) == DEFAULT_FEATURED and set(first) <= set(captured) and first == sorted(first)
    assert featured_ids(manifest, manifest.models[0], captured[::-1], seed=0) == first
    assert featured_ids(manifest, manifest.models[0], captured, seed=1) != first
    assert featured_ids(manifest, manifest.models[0], [4, 9], seed=0) == [4, 9]
    none = parse_manifest(_model(featured=[]), "x.toml")
    assert featured_ids(none, none.models[0], captured, seed=0) == []


def _tiny_with(featured: str, extra: str = "") -> str:
    return TINY.replace('seed = 0\nconfig', f'seed = 0\nfeatured = {featured}\nconfig').replace(
        'license = "CC0-1.0"', f'license = "CC0-1.0"{extra}')


@pytest.mark.parametrize(("featured", "expect"), [
    ('["zebra"]', "models[0].featured[0]: 'zebra' matches no sentence of dataset 'tiny-sentences'"),
    ('[0, 99]', "models[0].featured[1]: 99 names no sentence of dataset 'tiny-sentences' (its sample has "
                "sentences 0–5"),
    (json.dumps(list(range(MAX_FEATURED + 1))), f"models[0].featured[{MAX_FEATURED}]: one featured input too many"),
])
def test_validate_and_build_exit_2_naming_the_featured_entry(featured: str, expect: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    manifest = sb.manifest(_tiny_with(featured))
    for command in ("validate", "build"):
        run = sb.atlas(command, manifest)
        assert run.code == 2 and expect in run.err, (command, run.err)
        assert "Traceback" not in run.err and len([ln for ln in run.err.splitlines() if "featured" in ln]) == 1
    assert not (sb.cwd / "build" / "atlas" / "cache").exists(), "the build stops before it captures anything"


def test_featured_input_the_token_budget_leaves_out_stops_the_build(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    manifest = sb.manifest(_tiny_with('["capital of France"]', "\nmax_tokens = 30"))
    assert sb.atlas("validate", manifest).code == 0, "sentence 5 is in the dataset's sample"
    run = sb.atlas("build", manifest)
    assert run.code == 2 and "models[0].featured[0]: 'capital of France' names sentence 5, which the capture " \
                              "left out" in run.err, run.err
    assert "datasets[].max_tokens = 30" in run.err and "Traceback" not in run.err
    assert not list((sb.cwd / "build" / "atlas" / "cache" / "tiny-bert").glob("heads-*")), "no per-head work"


def test_blob_tables_carry_explicit_ids() -> None:
    probs = np.array([[1.0, 0.0], [0.25, 0.75]])
    blob = input_blob(7, 40, [(1, 2, 0, probs), (0, 3, 1, probs.T)])
    assert blob[:4] == b"ATTI" and len(blob) == 28 + 2 * 16 + 2 * 4, "probs.T has a weight above the diagonal: full"
    q = np.array([[1.5, -2.0, 70000.0]], np.float32)
    wide = vector_blob(3, "query", 5, [(9, 11, q)])
    assert wide[:4] == b"QKVF" and len(wide) == 32 + 16 + 3 * 4, "beyond float16: stored as float32"
    assert len(vector_blob(3, "key", 1, [(9, 11, q[:, :2])])) == 32 + 16 + 2 * 2


@pytest.fixture(scope="module")
def data(tiny_build: Path) -> Path:
    return tiny_build / "site" / "data" / "tiny-bert"


def test_per_layer_input_files_hold_the_captures_weights_once(tiny_build: Path, data: Path) -> None:
    manifest = read_manifest(data / "manifest.json")
    inputs, model = manifest["inputs"], manifest["model"]
    assert inputs["count"] == manifest["dataset"]["num_sentences"] == 6
    assert inputs["files"]["attention"] == "inputs/S{input}_L{layer}.bin.gz"
    assert "attn" not in manifest["files"] and not (data / "attn").exists(), "one copy of the weights"
    cap_dir = next((tiny_build / "cache" / "tiny-bert").glob("capture-*"))
    tok = load_capture(cap_dir).tokens
    heads = {(h["layer"], h["head"]): h["kv_head"] for h in manifest["heads"]}
    for layer in range(model["num_layers"]):
        lc = read_layer(cap_dir, layer)
        for sid in range(inputs["count"]):
            f = read_input_attention(data / f"inputs/S{sid}_L{layer}.bin.gz")
            assert f.input_id == sid and f.first_token == tok.token_id[(tok.sentence_id == sid) & (tok.position == 0)]
            assert f.kv_head == {lh: kv for lh, kv in heads.items() if lh[0] == layer}
            for (_, head), w in f.weights.items():
                expected = np.rint(np.clip(lc.attention(sid)[head], 0.0, 1.0) * 255).astype(np.uint8)
                assert np.array_equal(w, expected), (sid, layer, head)


def test_vectors_are_the_captures_and_reproduce_the_models_attention(tiny_build: Path, data: Path) -> None:
    manifest = read_manifest(data / "manifest.json")
    inputs, model = manifest["inputs"], manifest["model"]
    assert inputs["featured"] == inputs["vectors"] and len(inputs["vectors"]) == DEFAULT_FEATURED
    cap_dir = next((tiny_build / "cache" / "tiny-bert").glob("capture-*"))
    cap = load_capture(cap_dir)
    tok = cap.tokens
    for layer in range(model["num_layers"]):
        lc = read_layer(cap_dir, layer)
        for head in range(model["num_heads"]):
            q = read_vectors(data / f"vectors/L{layer}Q{head}.bin")
            k = read_vectors(data / f"vectors/L{layer}K{model['kv_head_of_query'][head]}.bin")
            assert (q.layer, q.role, q.index, k.role) == (layer, "query", head, "key")
            assert sorted(q.rows) == sorted(inputs["vectors"]) and q.rows[inputs["vectors"][0]].dtype == np.float16
            for sid in inputs["vectors"]:
                rows = np.flatnonzero(tok.sentence_id == sid)[np.argsort(tok.position[tok.sentence_id == sid])]
                assert q.first_token[sid] == rows[0]
                assert np.array_equal(q.rows[sid], lc.q[rows, head].astype(np.float16))
                scores = q.rows[sid].astype(np.float64) @ k.rows[sid].astype(np.float64).T * model["scaling"]
                p = np.exp(scores - scores.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                assert np.abs(p - lc.attention(sid)[head]).max() < 1e-3


def test_every_input_has_a_model_view_page_with_escaped_text(tiny_build: Path) -> None:
    site = tiny_build / "site" / "models" / "tiny-bert"
    for sid in range(6):
        page = (site / "inputs" / str(sid) / "index.html").read_text("utf-8")
        assert f'data-view="model" data-data="../../../../data/tiny-bert/" data-input="{sid}"' in page
    hostile = (site / "inputs" / "4" / "index.html").read_text("utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile and HOSTILE not in hostile
    model_page = (site / "index.html").read_text("utf-8")
    assert model_page.count('href="inputs/') == 6 + DEFAULT_FEATURED
    assert HOSTILE not in model_page and 'data-search-exclude id="every-sentence"' in model_page


@pytest.fixture(scope="module")
def gqa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("gqa")
    manifest = out / "gqa.toml"
    manifest.write_text(GQA)
    build(manifest, out / "build", log=lambda msg: None)
    return manifest, out / "build"


def test_gqa_key_vectors_are_stored_once_per_key_head(gqa: tuple[Path, Path]) -> None:
    _, out = gqa
    data = out / "site" / "data" / "tiny-llama"
    manifest = read_manifest(data / "manifest.json")
    model, inputs = manifest["model"], manifest["inputs"]
    assert model["kv_head_of_query"] == [0, 0, 1, 1] and model["causal"]
    assert inputs["featured"] == [5, 1], "in the manifest's order: 'PARIS' matches sentence 5 in any case"
    assert sorted(p.name for p in (data / "vectors").glob("L0*")) == ["L0K0.bin", "L0K1.bin", "L0Q0.bin", "L0Q1.bin",
                                                                      "L0Q2.bin", "L0Q3.bin"]
    cap_dir = next((out / "cache" / "tiny-llama").glob("capture-*"))
    for layer in range(model["num_layers"]):
        lc = read_layer(cap_dir, layer)
        for head in range(model["num_heads"]):
            kv = model["kv_head_of_query"][head]
            q = read_vectors(data / f"vectors/L{layer}Q{head}.bin").rows[5].astype(np.float64)
            k = read_vectors(data / f"vectors/L{layer}K{kv}.bin").rows[5].astype(np.float64)
            scores = q @ k.T * model["scaling"] + np.triu(np.full((len(q), len(q)), -np.inf), 1)
            p = np.exp(scores - scores.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            assert np.abs(p - lc.attention(5)[head]).max() < 1e-3, "post-RoPE vectors: softmax is the attention"
    for layer in range(model["num_layers"]):
        f = read_input_attention(data / f"inputs/S5_L{layer}.bin.gz")
        assert f.kv_head == {(h["layer"], h["head"]): h["kv_head"] for h in manifest["heads"] if h["layer"] == layer}
    page = (out / "site" / "models" / "tiny-llama" / "index.html").read_text("utf-8")
    assert re.search(r'<a href="inputs/5/">Sentence 5</a>: Paris is the capital of France', page)


def test_changing_featured_inputs_recaptures_and_recomputes_nothing(gqa: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, out = gqa
    changed = tmp_path / "gqa.toml"
    changed.write_text(manifest.read_text().replace('featured = ["PARIS", 1]', "featured = [0]"))
    report = build(changed, out, log=lambda msg: None)
    assert report.rebuilt == [] and "tiny-llama/capture" in report.reused
    data = out / "site" / "data" / "tiny-llama"
    assert read_manifest(data / "manifest.json")["inputs"]["vectors"] == [0]
    assert sorted(read_vectors(data / "vectors/L1Q3.bin").rows) == [0]
