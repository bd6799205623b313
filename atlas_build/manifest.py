"""Load and validate `data_manifests/*.toml` into typed, frozen specs.

Validation happens up front and is strict: unknown keys are errors, every problem in the file is reported (not
only the first), and every message names the file, the key path (``models[0].source``) and what was expected.
"""

from __future__ import annotations

import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .errors import ManifestError
from .fsutil import read_regular
from .manifest_values import _bool, _Ctx, _describe, _fields, _float, _int, _Recorded, _str, _table
from .project.layouts import LAYOUT_NAMES as LAYOUTS
from .project.layouts import LAYOUTS as REGISTRY
from .project.layouts import METRICS

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
PACKAGE_RE = re.compile(r"^package:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
RANDOM_RE = re.compile(r"^random:[a-z0-9_]+$")
# Config keys that name a count or a size (num_hidden_layers, hidden_size, head_dim, ...): positive integers.
COUNT_KEY_RE = re.compile(r"^(num|n)_|_(size|dim|heads|layers|embeddings|positions)$")
URL_RE = re.compile(r"^https?://[^\s\"'<>`\\]+$")
MAX_TOKEN_BUDGET = 2_000_000
#: At most this many featured inputs per model (their q/k vectors are exported for the neuron view).
MAX_FEATURED = 8
MAX_MANIFEST_BYTES = 16 * 2**20
TEXT_FORMATS = ("auto", "text", "jsonl", "csv", "json")
#: text and images: one attention stack; pairs (source/target text) and audio (clips/target): encoder–decoder.
DATASET_KINDS = ("text", "images", "pairs", "audio")


@dataclass(frozen=True)
class SiteSpec:
    title: str = "Attention Atlas"
    description: str = ""
    base_url: str = ""
    repo_url: str = ""


@dataclass(frozen=True)
class BuildSpec:
    batch_size: int = 16
    capture_dtype: str = "float16"
    device: str = "auto"
    seed: int = 0
    scheduler: str = ""  # Dask scheduler address for per-head work ("" = local process pool of --jobs workers)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str
    format: str = "auto"
    field: str = ""
    sentences: tuple[str, ...] = ()
    max_tokens: int = 5000
    max_sentences: int = 100_000
    min_words: int = 1
    max_words: int = 64
    max_token_repeats: int = 0  # 0: every token gets query/key points; N: only the first N occurrences of a token do
    seed: int = 0
    license: str = ""
    attribution: str = ""
    kind: str = "text"
    images: tuple[str, ...] = ()
    image_size: int = 224
    max_images: int = 64
    # Encoder–decoder data (kind = "pairs": source text ``field`` + target text; kind = "audio": clips + target).
    target_field: str = ""  # JSONL/JSON field or CSV column of the target; "": targets are generated (greedy)
    targets: tuple[str, ...] = ()  # inline targets, one per sentence (pairs) or clip (audio)
    max_target_tokens: int = 32  # cap on the decoder tokens of a generated target
    max_clips: int = 8
    clip_seconds: float = 1.0  # length of each synthetic clip


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    dataset: str  #: the model's (first) dataset
    title: str = ""
    revision: str = "main"
    dtype: str = "float32"
    max_tokens: int = 128
    tokenizer: str = ""
    gguf_file: str = ""
    config: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    license: str = ""
    # Featured inputs (neuron-view vectors, listed on the model page): sentence/image ids (int) or text matches
    # (str); None: a seeded handful.
    featured: tuple[int | str, ...] | None = None
    #: Several datasets (``datasets = [...]``), the first being `dataset`; () when the model has one dataset.
    datasets: tuple[str, ...] = ()

    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)

    @property
    def all_datasets(self) -> tuple[str, ...]:
        """Every dataset the model is captured on, in manifest order."""
        return self.datasets or (self.dataset,)

    def on(self, dataset: str) -> "ModelSpec":
        """The model on one of its datasets (`dataset` is that one, `datasets` still lists them all): what each
        per-dataset stage reads (capture, export, featured)."""
        return replace(self, dataset=dataset)


@dataclass(frozen=True)
class ProjectionSpec:
    #: Every layout: the attention-aware faithful-2d (the default view, see `default`), the paper's PCA, t-SNE and
    #: UMAP in 2D, then 3D, where t-SNE/UMAP continue the 2D solution, so the six classic ones cost about 1.3x the 2D
    #: set (docs/reference/projections.md) and faithful-2d about 1.2x one t-SNE (docs/reference/faithfulness.md).
    layouts: tuple[str, ...] = ("faithful-2d", "pca-2d", "tsne-2d", "umap-2d", "pca-3d", "tsne-3d", "umap-3d")
    metric: str = "cosine"
    tsne_perplexity: float = 30.0
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    #: The layout head and matrix pages open with; None: faithful-2d when listed, else the first 2D layout.
    default_layout: str | None = None
    #: Value layouts and files (the head pages' value view); the value scores are computed either way.
    values: bool = True

    @property
    def default(self) -> str:
        """The layout pages open with (always one of `layouts`)."""
        if self.default_layout is not None:
            return self.default_layout
        two_d = [name for name in self.layouts if REGISTRY[name].dims == 2]
        return next((name for name in two_d if REGISTRY[name].method == "faithful"), (two_d or list(self.layouts))[0])


@dataclass(frozen=True)
class ExportSpec:
    thumbnail_size: int = 160
    tile_threshold: int = 200_000
    #: Bits per stored layout coordinate (8–16): 12 keeps a 2D layout at about 3/4 of its 16-bit bytes, and its grid
    #: (1/4096 of the layout's extent) shows only beyond about 6x zoom (docs/reference/formats.md).
    coordinate_bits: int = 16


@dataclass(frozen=True)
class Manifest:
    path: Path
    site: SiteSpec
    build: BuildSpec
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...]
    projections: ProjectionSpec = field(default_factory=ProjectionSpec)
    export: ExportSpec = field(default_factory=ExportSpec)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def dataset(self, name: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.name == name)


def _model_source(ctx: _Ctx, key: str, v: Any) -> str:
    what = "a hub id, a directory, a .gguf file, package:NAME or random:MODEL_TYPE"
    if not isinstance(v, str) or not v.strip():
        raise ctx.fail(key, f"expected {what}, got {_describe(v)}")
    if (PACKAGE_RE.match(v) or RANDOM_RE.match(v) or is_path_like(v) or HUB_ID_RE.match(v)) and "\x00" not in v:
        return v
    raise ctx.fail(key, f"expected {what}, got {_describe(v)}")


def _url(ctx: _Ctx, key: str, v: Any) -> str:
    """An absolute http(s) URL or "": other schemes (javascript:, data:) would become live links on every page."""
    v = _str(ctx, key, v, what="an http(s) URL")
    if v and not URL_RE.match(v):
        raise ctx.fail(key, f"expected an absolute http:// or https:// URL without spaces or quotes, got {_describe(v)}")
    return v


def is_path_like(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.endswith(".gguf")


def _sentences(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ctx.fail(key, f"expected a list of strings, got {_describe(v)}")
    return tuple(_str(ctx, f"{key}[{i}]", s) for i, s in enumerate(v))


def _layouts(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise ctx.fail(key, f"expected a non-empty list of layouts ({', '.join(LAYOUTS)}), got {_describe(v)}")
    out = tuple(_str(ctx, f"{key}[{i}]", s, choices=LAYOUTS) for i, s in enumerate(v))
    if len(set(out)) != len(out):
        raise ctx.fail(key, "lists a layout twice")
    return out


def _config(ctx: _Ctx, key: str, v: Any) -> tuple[tuple[str, Any], ...]:
    table = _table(ctx, key, v)
    for k, item in table.items():
        if isinstance(item, dict):
            raise ctx.fail(f"{key}.{k}", "nested tables are not supported in a model config")
        if COUNT_KEY_RE.search(k) and (isinstance(item, bool) or not isinstance(item, int) or item < 1):
            raise ctx.fail(f"{key}.{k}", f"a count or size: expected a positive integer, got {_describe(item)}")
    return tuple(sorted(table.items()))


# --- sections ----------------------------------------------------------------------------------------------------


def _featured(ctx: _Ctx, key: str, v: Any) -> tuple[int | str, ...]:
    """Input ids (sentence or image id, from 0) and non-empty texts to match; at most MAX_FEATURED, no repeats."""
    if not isinstance(v, list):
        raise ctx.fail(key, f"expected a list of input ids and texts, got {_describe(v)}")
    if len(v) > MAX_FEATURED:
        raise ctx.fail(f"{key}[{MAX_FEATURED}]", f"one featured input too many: at most {MAX_FEATURED} per model")
    out = tuple(_str(ctx, f"{key}[{i}]", x, pattern=re.compile(r"\s*\S"), what="an input id or a text to match")
                if isinstance(x, str) else _int(ctx, f"{key}[{i}]", x, 0, 2**32 - 1) for i, x in enumerate(v))
    for i, x in enumerate(out):
        if x in out[:i]:
            raise ctx.fail(f"{key}[{i}]", f"repeats featured[{out.index(x)}] ({_describe(x)})")
    return out


def _parse_dataset(ctx: _Ctx, key: str, raw: Any) -> DatasetSpec:
    s = lambda **kw: (lambda k, v: _str(ctx, k, v, **kw))  # noqa: E731
    i = lambda lo, hi: (lambda k, v: _int(ctx, k, v, lo, hi))  # noqa: E731
    spec = {
        "name": s(pattern=NAME_RE, what="a name of lowercase letters, digits, '-' or '_' (at most 64)"),
        "source": s(what="'inline', a file path or package:NAME/path"),
        "format": s(choices=TEXT_FORMATS), "field": s(),
        "sentences": lambda k, v: _sentences(ctx, k, v),
        "max_tokens": i(1, MAX_TOKEN_BUDGET), "max_sentences": i(1, 10_000_000),
        "min_words": i(1, 10_000), "max_words": i(1, 10_000), "seed": i(0, 2**32 - 1),
        "max_token_repeats": i(0, MAX_TOKEN_BUDGET), "license": s(), "attribution": s(),
        "kind": s(choices=DATASET_KINDS),
        "images": lambda k, v: _sentences(ctx, k, v),
        "image_size": i(16, 4096), "max_images": i(1, 100_000),
        "target_field": s(), "targets": lambda k, v: _sentences(ctx, k, v),
        "max_target_tokens": i(2, 32_768), "max_clips": i(1, 100_000),
        "clip_seconds": lambda k, v: _float(ctx, k, v, 0.01, 3600.0),
    }
    d = DatasetSpec(**_fields(ctx, key, raw, spec, required=("name", "source")))
    _check_encdec_dataset(ctx, key, d)
    if d.kind == "audio":
        return d
    if d.kind == "images":
        if d.sentences:
            raise ctx.fail(f"{key}.sentences", "an image dataset lists no sentences")
        if d.max_token_repeats:
            raise ctx.fail(f"{key}.max_token_repeats", "applies to text datasets only (image patches have no vocabulary)")
        return d
    if d.images:
        raise ctx.fail(f"{key}.images", "only an image dataset (kind = \"images\") lists images")
    if d.source == "inline" and not d.sentences:
        raise ctx.fail(f"{key}.sentences", "an inline dataset needs a non-empty list of sentences")
    if d.source != "inline" and d.sentences:
        raise ctx.fail(f"{key}.sentences", "only an inline dataset (source = \"inline\") lists sentences")
    if d.min_words > d.max_words:
        raise ctx.fail(f"{key}.min_words", f"must not exceed max_words ({d.max_words}), got {d.min_words}")
    return d


def _dataset_names(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...]:
    """``datasets = [...]``: a non-empty list of distinct dataset names."""
    if not isinstance(v, list) or not v:
        raise ctx.fail(key, f"expected a non-empty list of dataset names, got {_describe(v)}")
    out = tuple(_str(ctx, f"{key}[{i}]", x) for i, x in enumerate(v))
    for i, x in enumerate(out):
        if x in out[:i]:
            raise ctx.fail(f"{key}[{i}]", f"lists {_describe(x)} twice (first at {key}[{out.index(x)}])")
    return out


#: Dataset keys that only encoder–decoder kinds read, and the kinds that read each.
ENCDEC_KEYS = {"target_field": ("pairs",), "targets": ("pairs", "audio"), "max_target_tokens": ("pairs", "audio"),
               "max_clips": ("audio",), "clip_seconds": ("audio",)}


def _check_encdec_dataset(ctx: _Ctx, key: str, d: DatasetSpec) -> None:
    """Keys that only pair and audio datasets read, and their consistency."""
    defaults = DatasetSpec(d.name, d.source)
    for k, kinds in ENCDEC_KEYS.items():
        if d.kind not in kinds and getattr(d, k) != getattr(defaults, k):
            raise ctx.fail(f"{key}.{k}", f"only a dataset of kind {' or '.join(map(repr, kinds))} reads it")
    if d.kind == "pairs" and d.source == "inline" and d.target_field:
        raise ctx.fail(f"{key}.target_field", "an inline pairs dataset lists its targets in targets = [...]")
    if d.kind == "pairs" and d.source != "inline" and d.targets:
        raise ctx.fail(f"{key}.targets", "only an inline dataset (source = \"inline\") lists targets")
    if d.kind == "pairs" and d.targets and len(d.targets) != len(d.sentences):
        raise ctx.fail(f"{key}.targets", f"{len(d.targets)} targets for {len(d.sentences)} sentences")
    if d.kind == "audio" and (d.sentences or d.images):
        raise ctx.fail(f"{key}.{'sentences' if d.sentences else 'images'}",
                       "an audio dataset lists no sentences or images")


def _parse_model(ctx: _Ctx, key: str, raw: Any) -> ModelSpec:
    s = lambda **kw: (lambda k, v: _str(ctx, k, v, **kw))  # noqa: E731
    spec = {
        "name": s(pattern=NAME_RE, what="a name of lowercase letters, digits, '-' or '_' (at most 64)"),
        "source": lambda k, v: _model_source(ctx, k, v),
        "dataset": s(), "datasets": lambda k, v: _dataset_names(ctx, k, v),
        "title": s(), "revision": s(), "license": s(), "gguf_file": s(),
        "dtype": s(choices=("float32", "float16", "bfloat16")),
        "max_tokens": lambda k, v: _int(ctx, k, v, 2, 32_768),
        "tokenizer": lambda k, v: _model_source(ctx, k, v),
        "config": lambda k, v: _config(ctx, k, v),
        "seed": lambda k, v: _int(ctx, k, v, 0, 2**32 - 1),
        "featured": lambda k, v: _featured(ctx, k, v),
    }
    fields = _fields(ctx, key, raw, spec, required=("name", "source"))
    table = _table(ctx, key, raw)
    if "dataset" in table and "datasets" in table:
        raise ctx.fail(f"{key}.datasets", "give either dataset or datasets, not both")
    if "dataset" not in table and "datasets" not in table:
        raise ctx.fail(f"{key}.dataset", "required key is missing (or datasets = [...])")
    if "datasets" in table:
        if "datasets" not in fields:
            raise _Recorded  # a bad list: already reported
        names = fields.pop("datasets")
        # One dataset in a list is the plain `dataset = "..."` case (same spec, same cache keys).
        fields.update(dataset=names[0], datasets=names if len(names) > 1 else ())
    elif "dataset" not in fields:
        raise _Recorded
    return ModelSpec(**fields)


def _parse_projections(ctx: _Ctx, raw: Any) -> ProjectionSpec:
    spec = {
        "layouts": lambda k, v: _layouts(ctx, k, v),
        "metric": lambda k, v: _str(ctx, k, v, choices=METRICS),
        "tsne_perplexity": lambda k, v: _float(ctx, k, v, 2.0, 500.0),
        "umap_n_neighbors": lambda k, v: _int(ctx, k, v, 2, 500),
        "umap_min_dist": lambda k, v: _float(ctx, k, v, 0.0, 1.0),
        "default_layout": lambda k, v: _str(ctx, k, v, choices=LAYOUTS),
        "values": lambda k, v: _bool(ctx, k, v),
    }
    p = ProjectionSpec(**_fields(ctx, "projections", raw, spec))
    if p.default_layout is not None and p.default_layout not in p.layouts:
        raise ctx.fail("projections.default_layout",
                       f"{p.default_layout!r} is not one of the layouts built ({', '.join(p.layouts)})")
    return p


def parse_manifest(data: dict[str, Any], path: str | Path) -> Manifest:
    """Validate a parsed TOML document; raises one ManifestError listing every problem (``.problems``)."""
    ctx = _Ctx(str(path))
    top = {"site", "build", "datasets", "models", "projections", "export"}
    for k in data:
        if k not in top:
            ctx.problems.append(ctx.fail(k, f"unknown key (expected one of: {', '.join(sorted(top))})"))
    s = lambda **kw: (lambda k, v: _str(ctx, k, v, **kw))  # noqa: E731
    site = ctx.check(lambda: SiteSpec(**_fields(ctx, "site", data.get("site", {}), {
        "title": s(), "description": s(), "base_url": lambda k, v: _url(ctx, k, v),
        "repo_url": lambda k, v: _url(ctx, k, v)})))
    build = ctx.check(lambda: BuildSpec(**_fields(ctx, "build", data.get("build", {}), {
        "batch_size": lambda k, v: _int(ctx, k, v, 1, 4096),
        "capture_dtype": s(choices=("float16", "float32")),
        "device": s(pattern=re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$"), what="auto, cpu, mps, cuda or cuda:N"),
        "seed": lambda k, v: _int(ctx, k, v, 0, 2**32 - 1),
        "scheduler": s(pattern=re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://\S+)?$"),
                       what="a Dask scheduler address such as tcp://host:8786"),
    })))
    export = ctx.check(lambda: ExportSpec(**_fields(ctx, "export", data.get("export", {}), {
        "thumbnail_size": lambda k, v: _int(ctx, k, v, 32, 1024),
        "tile_threshold": lambda k, v: _int(ctx, k, v, 1000, 100_000_000),
        "coordinate_bits": lambda k, v: _int(ctx, k, v, 8, 16),
    })))
    projections = ctx.check(_parse_projections, ctx, data.get("projections", {}))
    datasets = ctx.check(_parse_list, ctx, data, "datasets", _parse_dataset, default=())
    models = ctx.check(_parse_list, ctx, data, "models", _parse_model, default=())
    names = {d.name: d for d in datasets}
    for i, m in enumerate(models):
        key = f"models[{i}].datasets" if m.datasets else f"models[{i}].dataset"
        unknown = [j for j, d in enumerate(m.all_datasets) if d not in names]
        for j in unknown if datasets else ():
            ctx.problems.append(ctx.fail(f"{key}[{j}]" if m.datasets else key, "expected one of the datasets "
                                         f"({', '.join(sorted(names))}), got {_describe(m.all_datasets[j])}"))
        if unknown:
            continue
        kinds = [names[d].kind for d in m.all_datasets]
        if len(set(kinds)) > 1:
            ctx.problems.append(ctx.fail(key, "mixes kinds of dataset; a model reads one kind of input "
                                         f"({', '.join(f'{d}: {k}' for d, k in zip(m.all_datasets, kinds))})"))
        # A random text model borrows a tokenizer; an image model reads pixels (no tokenizer).
        if m.source.startswith("random:") and not m.tokenizer and "images" not in kinds:
            ctx.problems.append(ctx.fail(f"models[{i}].tokenizer", "a random: model over a text dataset needs a "
                                                                   "tokenizer source (e.g. package:NAME)"))
    ctx.raise_problems()
    return Manifest(Path(path), site, build, datasets, models, projections, export)


def _parse_list(ctx: _Ctx, data: dict[str, Any], key: str, parse: Callable) -> tuple:
    raw = data.get(key)
    if raw is None:
        raise ctx.fail(key, f"required: at least one [[{key}]] table")
    if not isinstance(raw, list) or not raw:
        raise ctx.fail(key, f"expected a non-empty array of tables ([[{key}]]), got {_describe(raw)}")
    parsed = [ctx.check(parse, ctx, f"{key}[{i}]", item) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, item in enumerate(parsed):
        if item is None:
            continue
        if item.name in seen:
            ctx.problems.append(ctx.fail(f"{key}[{i}].name", f"duplicate name {item.name!r}"))
        seen.add(item.name)
    return tuple(item for item in parsed if item is not None)


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file."""
    p = Path(path)
    try:
        raw = read_regular(p, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ManifestError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise ManifestError(str(path), "", "is a directory, expected a TOML file") from None
    except ValueError as e:
        raise ManifestError(str(path), "", str(e).removeprefix(f"{p} ")) from None
    except OSError as e:
        raise ManifestError(str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(str(path), "", f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(str(path), "", f"invalid TOML: {e}") from None
    return parse_manifest(data, p)
