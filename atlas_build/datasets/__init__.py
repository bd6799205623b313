"""Text datasets: read a source, split into sentences, filter and sample them with a seed.

The output is an ordered list of `Sentence`s; the capture stage consumes them in order until the dataset's token
budget is reached, so the order *is* the seeded sample.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import stat
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError, SourceError
from ..extras import missing
from ..fingerprint import DigestMemo, path_digest
from ..fsutil import read_regular
from ..manifest import DatasetSpec
from .paths import resolve_path

HF_HINT = missing("hf", "an hf: dataset source (the `datasets` package)")

AUDIO_SOURCES = ("synthetic",)  # built-in audio sources (datasets.audio)
ENCDEC_KINDS = ("pairs", "audio")  # datasets of encoder–decoder inputs (datasets.pairs, datasets.audio)
FOLDER_KINDS = ("images", "audio")  # kinds whose file source is a folder
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Sentence:
    sentence_id: int
    text: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    seed: int
    license: str
    attribution: str


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences on terminal punctuation followed by a capital or digit."""
    text = " ".join(text.split())
    return [s.strip() for s in SENTENCE_SPLIT.split(text) if s.strip()]


def _read_text(path: Path, source: str) -> str:
    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise SourceError(source, f"file not found: {path}") from None
    except IsADirectoryError:
        raise SourceError(source, f"{path} is a directory, expected a file") from None
    except ValueError as e:
        raise SourceError(source, str(e)) from None
    except OSError as e:
        raise SourceError(source, f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None


def _field(obj: object, field: str, where: str) -> str:
    if isinstance(obj, str) and not field:
        return obj
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object with field {field or 'text'!r}, got {type(obj).__name__}")
    value = obj.get(field or "text")
    if not isinstance(value, str):
        raise InputError(f"{where}: field {field or 'text'!r} missing or not a string")
    return value


def _documents(path: Path, fmt: str, field: str, source: str) -> Iterator[str]:
    text = _read_text(path, source)
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}.get(path.suffix.lower(), "text")
    if fmt == "text":
        yield from (line for line in text.splitlines() if line.strip())
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            yield _field(obj, field, f"{path}:{n}")
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        column = field or "text"
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise InputError(f"{path}:1: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
        for row in reader:
            value = row.get(column)
            if value is None:
                raise InputError(f"{path}:{reader.line_num}: row has too few columns")
            yield value
    else:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else None
        if items is None:
            raise InputError(f"{path}: expected a JSON list or object of documents")
        for i, item in enumerate(items):
            yield _field(item, field, f"{path}: item {i}")


def read_documents(spec: DatasetSpec, base_dir: Path) -> Iterable[str]:
    """The raw documents of a dataset source, in file order."""
    if spec.source == "inline":
        return spec.sentences
    if spec.source.startswith("hf:"):
        return _hf_documents(spec)
    return _documents(resolve_path(spec.source, base_dir), spec.format, spec.field, spec.source)


def _hf_documents(spec: DatasetSpec) -> Iterator[str]:
    try:
        import datasets as hf_datasets  # type: ignore[import-not-found]
    except ImportError:
        raise SourceError(spec.source, HF_HINT) from None
    name, _, split = spec.source[3:].partition(":")
    try:
        ds = hf_datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as e:  # noqa: BLE001 - report any hub/network failure as a source error
        raise SourceError(spec.source, f"{type(e).__name__}: {e}") from None
    for row in ds:
        yield _field(row, spec.field, spec.source)


def load_sentences(spec: DatasetSpec, base_dir: Path) -> list[Sentence]:
    """Split, filter by word count, deduplicate and shuffle with the dataset's seed; ids follow the sample order."""
    if spec.kind in ENCDEC_KINDS:
        raise InputError(f"dataset {spec.name!r} (kind {spec.kind!r}) holds encoder–decoder inputs, not sentences: "
                         "read it with datasets.pairs.load_pairs or datasets.audio.load_clips")
    seen: set[str] = set()
    pool: list[str] = []
    for doc in read_documents(spec, base_dir):
        parts = [doc.strip()] if spec.source == "inline" else split_sentences(doc)
        for s in parts:
            words = len(s.split())
            if s and spec.min_words <= words <= spec.max_words and s not in seen:
                seen.add(s)
                pool.append(s)
    if not pool:
        raise InputError(f"dataset {spec.name!r}: no sentences left after splitting and filtering "
                         f"({spec.min_words}-{spec.max_words} words) from {spec.source}")
    if spec.source != "inline":
        random.Random(spec.seed).shuffle(pool)
    return [Sentence(i, s) for i, s in enumerate(pool[: spec.max_sentences])]


def check_source(spec: DatasetSpec, base_dir: Path) -> None:
    """The dataset's file or folder exists and has the right kind (regular file, folder), without reading it."""
    from .images import IMAGE_SOURCES

    if spec.source == "inline":
        return
    if spec.source.startswith("hf:"):
        if importlib.util.find_spec("datasets") is None:
            raise SourceError(spec.source, HF_HINT)
        return
    if spec.kind == "images" and all(p in IMAGE_SOURCES for p in spec.source.split("+")):
        return
    if spec.kind == "audio" and spec.source in AUDIO_SOURCES:
        return
    path = resolve_path(spec.source, base_dir)
    try:
        st = path.stat()
    except OSError:
        raise SourceError(spec.source, f"no such folder: {path}" if spec.kind in FOLDER_KINDS
                          else f"file not found: {path}") from None
    if spec.kind in FOLDER_KINDS:
        if not stat.S_ISDIR(st.st_mode):
            raise SourceError(spec.source, f"{path} is not a folder")
    elif stat.S_ISDIR(st.st_mode):
        raise SourceError(spec.source, f"{path} is a directory, expected a file")
    elif not stat.S_ISREG(st.st_mode):
        raise SourceError(spec.source, f"{path} is not a regular file")
    elif st.st_size > MAX_FILE_BYTES:
        raise SourceError(spec.source, f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB")
    elif not os.access(path, os.R_OK):
        raise SourceError(spec.source, f"{path} is not readable")


def dataset_digest(spec: DatasetSpec, base_dir: Path, memo: DigestMemo) -> str:
    """Digest of the files a dataset reads ("" for inline sentences, hub datasets and built-in image catalogues,
    whose content the manifest entry, the library versions and the code already pin)."""
    from .images import IMAGE_SOURCES

    check_source(spec, base_dir)
    if spec.source == "inline" or spec.source.startswith("hf:"):
        return ""
    if spec.kind == "images" and all(p in IMAGE_SOURCES for p in spec.source.split("+")):
        return ""
    if spec.kind == "audio" and spec.source in AUDIO_SOURCES:
        return ""
    return path_digest(resolve_path(spec.source, base_dir), spec.source, memo)


def dataset_info(spec: DatasetSpec) -> DatasetInfo:
    return DatasetInfo(spec.name, spec.source, spec.seed, spec.license, spec.attribution)
