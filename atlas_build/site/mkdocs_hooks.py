"""mkdocs hooks of every atlas site (listed under `hooks:` by `mkdocs_config`).

After the build, the theme's files no reader fetches are left out of the site (`unfetched_theme_files`).

The site name, description, nav titles and page meta titles/descriptions arrive HTML-escaped (`markup.html_text`):
mkdocs-material prints them as HTML, except in a few attributes where it applies `| e`. Marking them `Markup`
makes those `| e` leave them as they are instead of escaping them a second time.
"""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup

META_KEYS = ("title", "description")


def _mark(items: list) -> None:
    for item in items:
        if isinstance(item.title, str):
            item.title = Markup(item.title)
        _mark(getattr(item, "children", None) or [])


def on_config(config):
    for key in ("site_name", "site_description"):
        if isinstance(config[key], str):
            config[key] = Markup(config[key])
    return config


def on_nav(nav, config, files):
    _mark(nav.items)
    return nav


def on_page_context(context, page, config, nav):
    for key in META_KEYS:
        if isinstance(page.meta.get(key), str):
            page.meta[key] = Markup(page.meta[key])
    return context


def search_scripts(langs: list[str]) -> set[str]:
    """The files under the theme's `assets/javascripts/lunr/` that its search worker loads for the search languages
    ``langs`` (mkdocs-material 9: `min/lunr.<lang>.min.js` for each language but English, `tinyseg.js` for Japanese,
    `wordcut.js` for Hindi and Thai, `min/lunr.multi.min.js` for several languages, and with any of these
    `min/lunr.stemmer.support.min.js`)."""
    files = {f"min/lunr.{lang}.min.js" for lang in langs if lang != "en"}
    files |= {"tinyseg.js" for lang in langs if lang == "ja"} | {"wordcut.js" for lang in langs if lang in ("hi", "th")}
    if len(langs) > 1:
        files.add("min/lunr.multi.min.js")
    return files | {"min/lunr.stemmer.support.min.js"} if files else set()


def unfetched_theme_files(site: Path) -> list[Path]:
    """The theme's source maps (only developer tools ask for them) and the search languages' scripts the site's
    search index does not name (about 2.2 MB a site). The search index's own language list decides, since it is what
    the worker reads; without one nothing of the search is touched."""
    assets = site / "assets"
    out = sorted(p for folder in ("javascripts", "stylesheets") for p in (assets / folder).rglob("*.map"))
    index, lunr = site / "search" / "search_index.json", assets / "javascripts" / "lunr"
    langs = json.loads(index.read_text("utf-8")).get("config", {}).get("lang") if index.is_file() else None
    if isinstance(langs, list) and lunr.is_dir():
        keep = search_scripts([str(lang) for lang in langs])
        out += sorted(p for p in lunr.rglob("*") if p.is_file() and p.relative_to(lunr).as_posix() not in keep)
    return out


def on_post_build(config):
    site = Path(config["site_dir"])
    for path in unfetched_theme_files(site):
        path.unlink()
    lunr = site / "assets" / "javascripts" / "lunr"
    for folder in sorted((p for p in lunr.rglob("*") if p.is_dir()), reverse=True) + [lunr]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
