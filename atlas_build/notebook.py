"""Python API for notebooks: build an atlas from a manifest path, dict or `Manifest`, and show a head (or one
sentence of it) inline with the site's own JS views, with no server, network or CDN.

The inline view is an ``<iframe srcdoc>``: a document of its own, so its import map and modules never meet the
notebook's. Inside, the view modules are ``data:`` URLs named by an import map (their ``./x.js`` imports rewritten to
bare ``atlas/x.js`` names), and ``fetch`` is replaced by a lookup in the head's files, embedded as base64. See
docs/notebook.md."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import html
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from .export.inputs import input_blob, read_input_attention
from .manifest import Manifest, load_manifest, parse_manifest
from .site import templates_dir

#: The invented origin the embedded files are addressed under; nothing is ever fetched from it.
ORIGIN = "https://atlas.invalid/"
MODULE_REF = re.compile(r"""(["'])\./([\w.-]+\.js)\1""")
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
TOP_TABLES = ("site", "build", "projections", "export")
ARRAYS = ("datasets", "models")


# --- building ----------------------------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to a manifest: {v!r}")


def _toml_key(k: str) -> str:
    return k if BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def manifest_toml(data: Mapping[str, Any]) -> str:
    """A manifest dict (the structure of the TOML file) as TOML text."""
    lines = []
    for key, value in data.items():
        if key in ARRAYS and isinstance(value, (list, tuple)):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
        elif isinstance(value, Mapping):
            lines += ["", f"[{key}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _spec_dict(spec: Any) -> dict[str, Any]:
    """A manifest entry's fields that differ from their defaults (what a manifest file would spell out)."""
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
        if value == default:
            continue
        out[f.name] = dict(value) if f.name == "config" else list(value) if isinstance(value, tuple) else value
    if out.get("datasets"):  # a model on several datasets: `datasets` lists its first `dataset` too
        del out["dataset"]
    return out


def manifest_dict(manifest: Manifest) -> dict[str, Any]:
    """A `Manifest` as the dict its TOML file would parse to."""
    out: dict[str, Any] = {k: _spec_dict(getattr(manifest, k)) for k in TOP_TABLES}
    out.update({k: [_spec_dict(s) for s in getattr(manifest, k)] for k in ARRAYS})
    return {k: v for k, v in out.items() if v or k in ARRAYS}


def _as_manifest(manifest: str | os.PathLike | Mapping | Manifest, base_dir: Path) -> tuple[Manifest, Path | None]:
    """(the validated manifest, its file when it is one as given)."""
    if isinstance(manifest, Manifest):
        return manifest, None
    if isinstance(manifest, Mapping):
        return parse_manifest(dict(manifest), base_dir / "<manifest dict>"), None
    return load_manifest(manifest), Path(manifest)


def build(manifest: str | os.PathLike | Mapping | Manifest, out_dir: str | os.PathLike | None = None, *,
          base_dir: str | os.PathLike | None = None, jobs: int = 1, force: bool = False, device: str | None = None,
          log: Callable[[str], None] | None = None):
    """Build an atlas like ``atlas build``; returns the `BuildReport` (its ``site_dir`` is the site).

    `manifest`: a TOML file, a dict of the same structure, or a `Manifest`. A dict's relative paths are relative
    to `base_dir` (default: the current directory), a `Manifest`'s to its own ``base_dir``. `out_dir` defaults to
    ``build/<manifest file name>`` (``build/atlas`` for a dict or `Manifest`). Messages go to `log` (default: none).
    """
    from .pipeline import build as pipeline_build

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    parsed, path = _as_manifest(manifest, base)
    out = Path(out_dir) if out_dir is not None else Path("build") / (path.stem if path else "atlas")
    quiet = log or (lambda msg: None)
    if path is not None:
        return pipeline_build(path, out, jobs=jobs, force=force, device=device, log=quiet)
    # The pipeline reads a file: the manifest is written beside the paths it names, and removed afterwards.
    where = parsed.base_dir if isinstance(manifest, Manifest) else base
    fd, tmp = tempfile.mkstemp(prefix=".atlas-manifest-", suffix=".toml", dir=where)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(manifest_toml(manifest_dict(parsed)))
        return pipeline_build(tmp, out, jobs=jobs, force=force, device=device, log=quiet)
    finally:
        os.unlink(tmp)


# --- inline views ------------------------------------------------------------------------------------------------


class AtlasHTML:
    """An inline atlas view: ``.html`` is an ``<iframe srcdoc>`` string; Jupyter shows it through `_repr_html_`."""

    def __init__(self, html_text: str, title: str) -> None:
        self.html = html_text
        self.title = title

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html

    def save(self, path: str | os.PathLike) -> Path:
        """Write a standalone HTML page holding the view (opens from file://, offline)."""
        page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title></head>\n<body>\n{self.html}\n</body></html>\n")
        Path(path).write_text(page, "utf-8")
        return Path(path)


def _site_dir(where: Any) -> Path:
    """The site folder of a `BuildReport`, a build directory (holding site/) or a site folder."""
    path = Path(getattr(where, "site_dir", where))
    for candidate in (path, path / "site"):
        if (candidate / "data").is_dir():
            return candidate
    raise FileNotFoundError(f"{path} is neither a built atlas site nor a build directory holding one")


def _modules(entry: str = "head-view.js") -> dict[str, str]:
    """The view `entry` and every module it imports (statically or dynamically), its imports made bare names."""
    folder = templates_dir() / "assets" / "atlas"
    out: dict[str, str] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        text = (folder / name).read_text("utf-8")
        todo += [m[2] for m in MODULE_REF.finditer(text)]
        out[name] = MODULE_REF.sub(lambda m: f"{m[1]}atlas/{m[2]}{m[1]}", text)
    return out


def _head_attention(data: Path, template: str | None, layer: int, head: int,
                    sentences: list[int]) -> dict[str, bytes]:
    """The per-input attention files of the head's layer for `sentences`, each cut down to this head's block (the
    file format allows any set of heads), so a view embeds one head's weights, not its whole layer's."""
    out = {}
    for sid in sentences if template else ():
        rel = template.format(input=sid, layer=layer)
        if not (data / rel).is_file():
            continue
        stored = read_input_attention(data / rel)
        weights = stored.weights[(layer, head)].astype(np.float64) / 255
        out[rel] = gzip.compress(input_blob(sid, stored.first_token, [(layer, head, stored.kv_head[(layer, head)],
                                                                      weights)]), mtime=0)
    return out


def _head_files(data: Path, manifest: dict, layer: int, head: int, sentences: list[int]) -> dict[str, bytes]:
    """Relative path → bytes of every file the head view may read for this head (tiles left out: the view draws
    the points); the attention of `sentences` only."""
    rels = ["manifest.json", manifest["tokens"]["file"]] + [im["file"] for im in manifest.get("images", [])]
    for kind, template in manifest["files"].items():
        if kind in ("thumb", "tiles"):
            continue
        layouts = manifest["layouts"] if "{layout}" in template else [""]
        rels += [template.format(layer=layer, head=head, layout=lay) for lay in layouts]
    files = manifest.get("inputs", {}).get("files", {})  # the neuron view's vectors of this head
    kv = manifest["model"]["kv_head_of_query"][head]
    rels += [files[k].format(layer=layer, head=head, kv_head=kv) for k in ("query", "key") if k in files]
    out = {rel: (data / rel).read_bytes() for rel in rels if (data / rel).is_file()}
    out.update(_head_attention(data, files.get("attention"), layer, head, sentences))
    head_rel = manifest["files"]["head"].format(layer=layer, head=head)
    info = json.loads(out[head_rel])
    info.pop("tiles", None)
    out[head_rel] = json.dumps(info).encode()
    return out


def _sentence_ids(data: Path, manifest: dict, sentence: int | None) -> list[int]:
    """The sentence a view shows, or every sentence of the model (a head view selects any point)."""
    if sentence is not None:
        return [sentence]
    with pa.memory_map(str(data / manifest["tokens"]["file"])) as source:
        ids = pa.ipc.open_file(source).read_all().column("sentence_id").to_numpy()
    return sorted(set(ids.tolist()))


def _script_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


SHIM = """
(() => {
  const files = JSON.parse(document.getElementById("atlas-files").textContent);
  const types = { json: "application/json", png: "image/png", arrow: "application/vnd.apache.arrow.file" };
  // Every data file the view asks for comes from the embedded files; nothing goes to the network.
  window.fetch = async (input) => {
    const url = String(input && input.url ? input.url : input);
    if (!(url in files)) return new Response("not embedded in this view", { status: 404 });
    const bytes = Uint8Array.from(atob(files[url]), (c) => c.charCodeAt(0));
    const ext = url.split(".").pop();
    return new Response(bytes, { headers: { "Content-Type": types[ext] || "application/octet-stream" } });
  };
  // The view keeps its state in the URL, which an iframe srcdoc cannot always rewrite; links lead nowhere here.
  const replace = history.replaceState.bind(history);
  history.replaceState = (...args) => {
    try {
      replace(...args);
    } catch {
      // an about:srcdoc document may not take a URL: the view's state simply stays out of it
    }
  };
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("a[href]")) e.preventDefault();
  }, true);
})();
"""

MOUNT = """
import { mountHead } from "atlas/head-view.js";
const root = document.querySelector(".atlas-view");
const { sentence } = JSON.parse(root.dataset.show);
const view = mountHead(root);
const frame = window.frameElement;
const fit = () => (frame.style.height = `${document.documentElement.scrollHeight + 4}px`);
if (frame) new ResizeObserver(fit).observe(document.body);
new MutationObserver((_, observer) => {
  if (root.dataset.state !== "ready" || sentence === null) return;
  observer.disconnect();
  const rows = view.model.sentences.get(sentence) || [];
  const ids = rows.map((row) => view.model.pointOfToken(row, false)).filter((id) => id !== null);
  if (ids.length) view.select(ids[0]);
}).observe(root, { attributes: true, attributeFilter: ["data-state"] });
"""

STYLE = """
body { margin: 0; padding: 8px; background: #fff; color: #222; font: 16px/1.5 system-ui, sans-serif; }
.atlas-plot { height: 460px; }
.atlas-headnav-own { display: none; }
"""
SENTENCE_ONLY = ".atlas-toolbar, .atlas-main, .atlas-sentence-close, .atlas-image-close { display: none; }"


def _view_html(site: Path, model: str, layer: int, head: int, sentence: int | None, height: int) -> AtlasHTML:
    data = site / "data" / model
    if not (data / "manifest.json").is_file():
        found = sorted(p.name for p in (site / "data").iterdir() if (p / "manifest.json").is_file())
        raise KeyError(f"{site} has no model {model!r} (models: {', '.join(found) or 'none'})")
    manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    if not any(h["layer"] == layer and h["head"] == head for h in manifest["heads"]):
        raise KeyError(f"model {model!r} has no head at layer {layer}, head {head}")
    base = f"{ORIGIN}data/{model}/"
    files = {base + rel: base64.b64encode(b).decode("ascii")
             for rel, b in _head_files(data, manifest, layer, head, _sentence_ids(data, manifest, sentence)).items()}
    imports = {f"atlas/{name}": "data:text/javascript;base64," + base64.b64encode(text.encode()).decode("ascii")
               for name, text in _modules().items()}
    css = "".join((templates_dir() / "assets" / "atlas" / name).read_text("utf-8")
                  for name in ("atlas.css", "inputs.css"))
    show = html.escape(json.dumps({"sentence": sentence}), quote=True)
    doc = (f'<!doctype html><html><head><meta charset="utf-8"><style>{css}{STYLE}'
           f'{SENTENCE_ONLY if sentence is not None else ""}</style>'
           f'<script type="importmap">{_script_json({"imports": imports})}</script>'
           f'<script type="application/json" id="atlas-files">{_script_json(files)}</script>'
           f"<script>{SHIM}</script></head><body>"
           f'<div class="atlas-view" data-view="head" data-data="{base}" data-layer="{layer}" data-head="{head}" '
           f'data-show="{show}"></div><script type="module">{MOUNT}</script></body></html>')
    title = f"{manifest['model'].get('title') or model} · layer {layer} · head {head}"
    if sentence is not None:
        title += f" · sentence {sentence}"
    frame = (f'<iframe class="atlas-inline" title="{html.escape(title, quote=True)}" '
             f'style="width:100%;height:{int(height)}px;border:0" srcdoc="{html.escape(doc, quote=True)}"></iframe>')
    return AtlasHTML(frame, title)


def show_head(site_or_out_dir: Any, model: str, layer: int, head: int, *, height: int = 720) -> AtlasHTML:
    """The head view of one head, inline: `site_or_out_dir` is a `BuildReport`, a build directory or its site."""
    return _view_html(_site_dir(site_or_out_dir), model, layer, head, None, height)


def show_sentence(site_or_out_dir: Any, model: str, layer: int, head: int, sentence: int, *,
                  height: int = 480) -> AtlasHTML:
    """The sentence view (image models: the image view) of one sentence (image) id for one head, inline."""
    return _view_html(_site_dir(site_or_out_dir), model, layer, head, int(sentence), height)
