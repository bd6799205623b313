"""Readable token text: the part of its sentence each token stands for, instead of the tokenizer's raw piece.

Raw pieces are unreadable for byte-level BPE (``Ġempire``, ``Ã©``, ``ðŁĺ``) and carry markers for SentencePiece
(``▁the``) and WordPiece (``##ing``). The readable text of a token is the stretch of the sentence from the end of the
previous token to the end of this one, so it keeps the whitespace before it (``" empire"``) and the texts of a
sentence's tokens concatenate to the sentence (up to text the tokenizer dropped, e.g. by truncation). Several tokens
can end at the same character: a character split into bytes over several byte-level tokens, or a SentencePiece
word-start marker ``▁`` before its word. The last of them gets the text; the others have ``""``. Special tokens keep
their names (``[CLS]``, ``<s>``, ``<|endoftext|>``).

Fast tokenizers give character offsets into the original sentence (so the text keeps its case and accents even when
the tokenizer normalises them away); other tokenizers decode growing prefixes of the sentence's token ids.
"""

from __future__ import annotations

from typing import Any, Sequence

Offsets = Sequence[tuple[int, int]]
REPLACEMENT = "\ufffd"


def from_offsets(sentence: str, offsets: Offsets, special: Sequence[bool]) -> list[str | None]:
    """Readable text per token from character offsets; None for special tokens."""
    out: list[str | None] = []
    cursor = 0
    ends = [int(end) for _, end in offsets]
    plain = [i for i, s in enumerate(special) if not s]
    later = {i: (ends[plain[k + 1]] if k + 1 < len(plain) else None) for k, i in enumerate(plain)}
    for i, end in enumerate(ends):
        if special[i]:
            out.append(None)
        elif end <= cursor or later[i] == end:
            out.append("")
        else:
            out.append(sentence[cursor:end])
            cursor = end
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def from_decoding(tokenizer: Any, ids: Sequence[int], special: Sequence[bool]) -> list[str | None]:
    """Readable text per token by decoding growing prefixes of the non-special ids; None for special tokens.

    A prefix that ends inside a multi-byte character decodes to U+FFFD: that token gets ``""`` and the token that
    completes the character gets all of it."""
    out: list[str | None] = []
    kept: list[int] = []
    done = ""
    for i, s in zip(ids, special):
        if s:
            out.append(None)
            continue
        kept.append(int(i))
        text = tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith(REPLACEMENT):
            out.append("")
            continue
        out.append(text[_common_prefix(done, text):])
        done = text
    return out


def readable_texts(tokenizer: Any, sentence: str, ids: Sequence[int], pieces: Sequence[str], special: Sequence[bool],
                   offsets: Offsets | None = None) -> list[str]:
    """The readable text of each token of one encoded sentence; special tokens keep their ``pieces`` name."""
    if offsets is not None and len(offsets) == len(ids):
        texts = from_offsets(sentence, offsets, special)
    else:
        texts = from_decoding(tokenizer, ids, special)
    return [p if t is None else t for t, p in zip(texts, pieces)]
