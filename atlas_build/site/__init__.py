"""Site stage: generate mkdocs-material pages from `site_templates/` and the exported data, and build them."""

from __future__ import annotations

import importlib.resources
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import jinja2
import yaml

from ..errors import AtlasError
from ..fsutil import write_bytes
from ..manifest import Manifest
from .faithful_example import faithful_example
from .findings import findings_page
from .input_pages import input_pages, inputs_section
from .markup import html_text, http_url, md_link_or_text, md_paragraphs, md_text
from .pages import head_page, matrix_page
from .unit_pages import block_facts, model_blocks_page, model_datasets_page, write_redirects

if TYPE_CHECKING:
    from ..pipeline.export_model import ExportedModel

TEMPLATES = Path(str(importlib.resources.files("atlas_build.site_templates")))


def templates_dir() -> Path:
    """The installed `atlas_build.site_templates` package (the repository's `site_templates/` folder)."""
    if not (TEMPLATES / "mkdocs.base.yml").is_file():
        raise AtlasError(f"site templates not found at {TEMPLATES}; reinstall attention-atlas")
    return TEMPLATES


def _write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def generate_docs(manifest: Manifest, models: Sequence["ExportedModel"], docs: Path,
                  pending: Sequence[str] = ()) -> list:
    """Write every page into `docs` (data directories are already there); returns the mkdocs nav."""
    tpl = templates_dir()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tpl / "pages")), autoescape=False,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(md=md_text, md_paragraphs=md_paragraphs, md_link=md_link_or_text)
    ctx_models = [{"name": m.slug, "title": m.title, **m.manifest} for m in models]
    # one row per atlas unit (a model on several datasets has one per dataset), an encoder–decoder model's blocks
    # in one row per dataset
    home = [{**c, "name": m.slug.rpartition("/")[0], "blocks": [
        {"name": b, "href": f"models/{m.slug.rpartition('/')[0]}/{b}/index.md", "layers": nl, "heads": nh}
        for b, nl, nh in block_facts(models, m)]} if m.block else c
        for m, c in zip(models, ctx_models) if not m.block or block_facts(models, m)[0][0] == m.block]
    _write_text(docs / "index.md", env.get_template("index.md.j2").render(
        site=manifest.site, models=home, num_models=len({m.name for m in models}), pending=list(pending)))
    _write_text(docs / "about.md", (tpl / "pages" / "about.md").read_text(encoding="utf-8")
                + faithful_example(ctx_models))
    shutil.copytree(tpl / "assets", docs / "assets", dirs_exist_ok=True)
    nav_models: list[dict] = []
    by_model: dict[str, list[dict]] = {}  # a model on several datasets: its nav entries
    for m in models:
        blocks = block_facts(models, m)
        title = f"{m.title} · {m.block}" if m.block else m.title
        _write_text(docs / "models" / m.slug / "index.md", matrix_page(m.slug, title, m.manifest, m.datasets, blocks)
                    + inputs_section(m.manifest, m.inputs))
        for rel, page in input_pages(m.slug, title, m.manifest, m.inputs).items():
            _write_text(docs / "models" / m.slug / rel, page)
        heads = m.manifest["heads"]
        for i, h in enumerate(heads):
            prev = heads[i - 1] if i > 0 else None
            nxt = heads[i + 1] if i + 1 < len(heads) else None
            page = head_page(m.slug, title, m.manifest, h, prev, nxt, http_url(manifest.site.base_url), m.datasets,
                             blocks)
            _write_text(docs / "models" / m.slug / f"L{h['layer']}" / f"H{h['head']}.md", page)
        if m.block:
            if m.name not in by_model:  # the model's first block: its page listing the blocks
                by_model[m.name] = [{"Blocks": f"models/{m.name}/index.md"}]
                nav_models.append({html_text(m.title): by_model[m.name]})
                _write_text(docs / "models" / m.name / "index.md", model_blocks_page(m, models, top=True))
            if m.datasets and blocks[0][0] == m.block:
                _write_text(docs / "models" / m.name / m.dataset / "index.md", model_blocks_page(m, models, top=False))
            by_model[m.name].append({html_text(f"{m.dataset} · {m.block}" if m.datasets else m.block):
                                     f"models/{m.slug}/index.md"})
            continue
        if not m.datasets:
            nav_models.append({html_text(m.title): f"models/{m.slug}/index.md"})
            continue
        if m.name not in by_model:  # the model's first dataset: its overview page, and its heads' one-dataset URLs
            by_model[m.name] = [{"Datasets": f"models/{m.name}/index.md"}]
            nav_models.append({html_text(m.title): by_model[m.name]})
            _write_text(docs / "models" / m.name / "index.md", model_datasets_page(m, models))
            write_redirects(docs / "models" / m.name, m.dataset, heads)
        by_model[m.name].append({html_text(m.dataset): f"models/{m.slug}/index.md"})
    _write_text(docs / "findings.md", findings_page([m.manifest for m in models], [m.slug for m in models]))
    return [{"Home": "index.md"}, {"Models": nav_models}, {"Findings": "findings.md"}, {"How to read": "about.md"}]


def mkdocs_config(manifest: Manifest, nav: list, docs: Path, site_dir: Path) -> dict:
    """The mkdocs configuration: the site's name and description HTML-escaped (mkdocs-material prints them as
    HTML), its URLs only when they are http(s).

    `site_url` is the manifest's `base_url`. Material's instant navigation only intercepts links listed in
    sitemap.xml, whose entries are absolute URLs under `site_url` (only scheme and host are rewritten to the page's):
    without a base_url the sitemap is empty, so instant navigation is left off and every link is a full page load."""
    base = yaml.safe_load((templates_dir() / "mkdocs.base.yml").read_text())
    base["theme"]["custom_dir"] = str(templates_dir() / base["theme"]["custom_dir"])
    base.update({
        "site_name": html_text(manifest.site.title),
        "site_description": html_text(manifest.site.description),
        "docs_dir": str(docs),
        "site_dir": str(site_dir),
        "nav": nav,
        "hooks": [str(Path(__file__).with_name("mkdocs_hooks.py"))],
    })
    for key, url in (("site_url", manifest.site.base_url), ("repo_url", manifest.site.repo_url)):
        if http_url(url):
            base[key] = http_url(url)
    if "site_url" not in base:
        base["theme"]["features"] = [f for f in base["theme"]["features"] if not f.startswith("navigation.instant")]
    return base


@contextmanager
def _reproducible() -> Iterator[None]:
    """Fix the build date mkdocs writes into sitemaps so identical inputs give identical files."""
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def build_site(manifest: Manifest, models: Sequence["ExportedModel"], staging: Path, site_dir: Path,
               pending: Sequence[str] = ()) -> None:
    """Generate pages under `staging/docs` and run mkdocs into `site_dir` (emptied first); publishing it is the
    caller's (see `atlas_build.outdir.publish`). ``pending``: titles of models still being built (home page note)."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    docs = staging / "docs"
    nav = generate_docs(manifest, models, docs, pending)
    if site_dir.exists():
        shutil.rmtree(site_dir)
    cfg_path = staging / "mkdocs.yml"
    _write_text(cfg_path, yaml.safe_dump(mkdocs_config(manifest, nav, docs, site_dir), sort_keys=True))
    logging.getLogger("mkdocs").setLevel(logging.WARNING)
    with _reproducible():
        config = load_config(str(cfg_path))
        mkdocs_build(config)
