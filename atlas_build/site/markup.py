"""Escaping of manifest and dataset strings for each place a page puts them: Markdown text, HTML handed to
mkdocs-material (titles, descriptions), and URLs. A string goes in as plain text and always renders as that text."""

from __future__ import annotations

import re
from html import escape
from urllib.parse import quote, urlsplit

#: Characters Python-Markdown (with the tables extension) lets a backslash escape, less `>` (HTML-escaped instead).
MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|])")
#: What may stay unencoded in a URL put into an attribute: no quotes, angle brackets, spaces or backslashes.
URL_SAFE = "/:?#[]@!$&()*+,;=%~"
#: Control characters (Python-Markdown marks its placeholders with STX/ETX).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: object) -> str:
    return " ".join(CONTROL.sub(" ", str(value)).split())


def md_text(value: object) -> str:
    """Markdown for literal inline text: whitespace collapsed to single spaces (it may sit in a heading or a table
    cell), every Markdown metacharacter backslash-escaped and HTML special characters turned into entities, so the
    text opens no tag, link, emphasis, attribute list or table cell."""
    return escape(MD_SPECIAL.sub(r"\\\1", _one_line(value)))


def md_paragraphs(value: object) -> str:
    """`md_text` per paragraph (paragraphs are separated by blank lines)."""
    return "\n\n".join(md_text(p) for p in re.split(r"\n\s*\n", str(value)) if p.strip())


def html_text(value: object) -> str:
    """HTML for literal text on one line: what mkdocs expects in `site_name`, nav titles and page meta titles."""
    return escape(_one_line(value))


def http_url(value: object) -> str:
    """`value` if it is an absolute http(s) URL, with quotes, angle brackets and spaces percent-encoded; else ""
    (a `javascript:` or `data:` URL never becomes a link)."""
    url = str(value).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return quote(url, safe=URL_SAFE)


def md_link_or_text(value: object) -> str:
    """An inline HTML link to `value` if it is an http(s) URL, else `value` as literal Markdown text."""
    url = http_url(value)
    return f'<a href="{escape(url)}">{md_text(value)}</a>' if url else md_text(value)
