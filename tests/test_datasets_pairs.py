"""Pair and audio datasets: fields of JSONL/JSON/CSV files and inline lists, seeded order, manifest keys."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from atlas_build.datasets.audio import load_clips, resample
from atlas_build.datasets.pairs import load_pairs
from atlas_build.errors import InputError, ManifestError
from atlas_build.manifest import DatasetSpec, parse_manifest

ROWS = [{"en": f"Sentence number {i} has a few words.", "de": f"Satz Nummer {i}."} for i in range(12)]


def test_jsonl_json_and_csv_give_the_same_seeded_pairs(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    (tmp_path / "p.json").write_text(json.dumps(ROWS))
    (tmp_path / "p.csv").write_text("en,de\n" + "".join(f"{r['en']},{r['de']}\n" for r in ROWS))
    got = [load_pairs(DatasetSpec("d", f"p.{ext}", kind="pairs", field="en", target_field="de", seed=5), tmp_path)
           for ext in ("jsonl", "json", "csv")]
    assert got[0] == got[1] == got[2]
    assert [p.pair_id for p in got[0]] == list(range(12))
    assert sorted(p.source for p in got[0]) == sorted(r["en"] for r in ROWS)
    assert all(p.target == next(r["de"] for r in ROWS if r["en"] == p.source) for p in got[0])
    other = load_pairs(DatasetSpec("d", "p.jsonl", kind="pairs", field="en", target_field="de", seed=6), tmp_path)
    assert [p.source for p in other] != [p.source for p in got[0]]  # the seed shuffles


def test_without_target_field_targets_are_left_to_generation(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    pairs = load_pairs(DatasetSpec("d", "p.jsonl", kind="pairs", field="en", max_sentences=3), tmp_path)
    assert len(pairs) == 3 and all(p.target is None for p in pairs)


def test_inline_pairs_keep_order_and_filter_by_source_words() -> None:
    spec = DatasetSpec("d", "inline", kind="pairs", sentences=("One two three.", "Too short", "Four five six seven."),
                       targets=("Eins zwei drei.", "Zu kurz", "Vier fuenf sechs sieben."), min_words=3)
    assert [(p.pair_id, p.source, p.target) for p in load_pairs(spec, Path("."))] == [
        (0, "One two three.", "Eins zwei drei."), (1, "Four five six seven.", "Vier fuenf sechs sieben.")]


@pytest.mark.parametrize("content, fmt, message", [
    ('{"en": "a b c"}\n', "p.jsonl", "p.jsonl:1: field 'de' missing or not a string"),
    ("en,fr\na b c,x\n", "p.csv", "p.csv:1: no column 'de' (columns: en, fr)"),
    ('{"en": "a b c", "de": "  "}\n', "p.jsonl", "p.jsonl:1: empty target 'de'"),
    ("a b c\n", "p.txt", "a pairs dataset reads jsonl, json or csv"),
])
def test_bad_pair_files_name_the_line(tmp_path: Path, content: str, fmt: str, message: str) -> None:
    (tmp_path / fmt).write_text(content)
    with pytest.raises(InputError) as e:
        load_pairs(DatasetSpec("d", fmt, kind="pairs", field="en", target_field="de"), tmp_path)
    assert message in str(e.value)


def test_wav_folder_is_read_mixed_to_mono_in_path_order(tmp_path: Path) -> None:
    rate = 8000
    t = np.arange(rate // 2) / rate
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    for name, data in (("b.wav", left), ("a.wav", left // 2)):
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(2), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(np.stack([data, np.zeros_like(data)], 1).tobytes())
    clips = load_clips(DatasetSpec("a", str(tmp_path), kind="audio", targets=("first", "second")), tmp_path)
    assert [(c.clip_id, c.name, c.target, c.sampling_rate) for c in clips] == [
        (0, "a.wav", "first", rate), (1, "b.wav", "second", rate)]
    assert clips[1].seconds == pytest.approx(0.5)
    assert np.abs(clips[1].samples).max() == pytest.approx(0.25, abs=1e-3)  # (0.5 + 0) / 2
    up = resample(clips[1].samples, rate, 16_000)
    assert len(up) == 8000 and np.allclose(up[::2], clips[1].samples, atol=1e-6)


def manifest_with(dataset: str) -> dict:
    from atlas_build.manifest import tomllib  # tomli on Python 3.10

    return tomllib.loads(f'[[datasets]]\nname = "d"\n{dataset}\n[[models]]\nname = "m"\nsource = "x/y"\n'
                         'dataset = "d"\n')


@pytest.mark.parametrize("dataset, key, message", [
    ('source = "inline"\nsentences = ["a b"]\ntarget_field = "de"', "datasets[0].target_field",
     "only a dataset of kind 'pairs' reads it"),
    ('source = "synthetic"\nkind = "pairs"\nmax_clips = 3', "datasets[0].max_clips",
     "only a dataset of kind 'audio' reads it"),
    ('kind = "pairs"\nsource = "p.jsonl"\ntargets = ["x"]', "datasets[0].targets", "only an inline dataset"),
    ('kind = "pairs"\nsource = "inline"\nsentences = ["a b"]\ntarget_field = "de"', "datasets[0].target_field",
     "lists its targets in targets"),
    ('kind = "audio"\nsource = "synthetic"\nsentences = ["a"]', "datasets[0].sentences", "an audio dataset lists"),
    ('kind = "audio"\nsource = "synthetic"\nclip_seconds = 0', "datasets[0].clip_seconds", "expected a number"),
    ('kind = "speech"\nsource = "synthetic"', "datasets[0].kind", "expected one of text, images, pairs, audio"),
])
def test_manifest_pair_and_audio_keys(dataset: str, key: str, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        parse_manifest(manifest_with(dataset), "m.toml")
    assert any(p.key == key and message in str(p) for p in e.value.problems), [str(p) for p in e.value.problems]


def test_manifest_reads_pair_and_audio_datasets() -> None:
    m = parse_manifest(manifest_with('kind = "pairs"\nsource = "p.jsonl"\nfield = "en"\ntarget_field = "de"\n'
                                     "max_target_tokens = 16"), "m.toml")
    d = m.datasets[0]
    assert (d.kind, d.field, d.target_field, d.max_target_tokens) == ("pairs", "en", "de", 16)
    a = parse_manifest(manifest_with('kind = "audio"\nsource = "synthetic"\nmax_clips = 2\nclip_seconds = 0.5\n'
                                     'targets = ["x", "y"]'), "m.toml").datasets[0]
    assert (a.kind, a.max_clips, a.clip_seconds, a.targets) == ("audio", 2, 0.5, ("x", "y"))
