"""mkdocs hooks of every atlas site (listed under `hooks:` by `mkdocs_config`).

The site name, description, nav titles and page meta titles/descriptions arrive HTML-escaped (`markup.html_text`):
mkdocs-material prints them as HTML, except in a few attributes where it applies `| e`. Marking them `Markup`
makes those `| e` leave them as they are instead of escaping them a second time.
"""

from __future__ import annotations

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
