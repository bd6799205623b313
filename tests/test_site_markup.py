"""Escaping of manifest strings on the way into pages: Markdown text renders as exactly that text, titles and
descriptions reach mkdocs HTML-escaped, and only http(s) URLs become links."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_build.manifest import BuildSpec, Manifest, SiteSpec
from atlas_build.site import mkdocs_config, templates_dir
from atlas_build.site.markup import html_text, http_url, md_link_or_text, md_paragraphs, md_text
from atlas_build.site.pages import head_page, matrix_page

HOSTILE = ["<script>alert('t')</script>", "\"><img src=x onerror=alert('og')>", "[x](javascript:alert(1))",
           "*bold* _em_ **strong** `code`", "{{ jinja }} {% if x %}y{% endif %}", "a: b # c", "| cell | x |",
           "# heading #", "{ onclick=alert(1) }", "<http://x.example>", "![i](x) [r]: javascript:alert(1)",
           "&lt;b&gt; &amp; \\*", "1. item", "- item", "> quote", "!!! note", "    indented", "line\n\nbreak  \n",
           "[TOC]", "\x02wzxhzdk:0\x03"]
METACHARS = "\\`*_{}[]()#+-.!|<>&\"':=~^ \n\tabc19"
TEXT = st.text(alphabet=st.sampled_from(list(METACHARS)) | st.characters(), max_size=40)


class _Parsed(HTMLParser):
    """Text and tags of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _render(source: str) -> str:
    """Markdown with the extensions of site_templates/mkdocs.base.yml."""
    config = yaml.safe_load((templates_dir() / "mkdocs.base.yml").read_text())["markdown_extensions"]
    names = [e if isinstance(e, str) else next(iter(e)) for e in config]
    options = {k: v for e in config if isinstance(e, dict) for k, v in e.items()}
    html = markdown.markdown(source, extensions=names, extension_configs=options)
    return re.sub(r'<a class="headerlink" href="#[^"]*" title="Permanent link">&para;</a>', "", html)


def _plain(value: str) -> str:
    return " ".join("".join(" " if ord(c) < 32 or c == "\x7f" else c for c in value).split())


def _assert_literal(source: str, value: str, tags: set[str]) -> None:
    parsed = _Parsed(_render(source))
    assert {tag for tag, _ in parsed.tags} <= tags, source
    assert "".join(parsed.text).strip().replace("\n", " ") == _plain(value), source


@pytest.mark.parametrize("value", HOSTILE)
def test_md_text_renders_literally_in_every_markdown_context(value: str) -> None:
    text = _plain(value)
    for source, tags in [(md_text(value), {"p"}), (f"# {md_text(value)}", {"h1"}),
                         (f"**{md_text(value)}**", {"p", "strong"}),
                         (f"<small class=\"x\">{md_text(value)}</small>", {"p", "small"})]:
        _assert_literal(source, value, tags)
    link = _Parsed(_render(f"[{md_text(value)}](page.md)"))
    assert [t for t in link.tags if t[0] == "a"] == [("a", {"href": "page.md"})]
    assert "".join(link.text) == text
    table = _Parsed(_render(f"| a | b |\n|---|---|\n| {md_text(value)} | 2 |\n"))
    assert [t for t, _ in table.tags].count("td") == 2 and text in "".join(table.text)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_md_text_is_literal_for_any_text(value: str) -> None:
    _assert_literal(md_text(value), value, {"p"} if _plain(value) else set())


def test_md_paragraphs_keep_paragraphs_and_nothing_else() -> None:
    html = _render(md_paragraphs("*one* [x](javascript:alert(1))\n\n  \n- two <b>\n"))
    assert html == "<p>*one* [x](javascript:alert(1))</p>\n<p>- two &lt;b&gt;</p>"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://x.example/atlas/", "https://x.example/atlas/"),
    ("http://x.example/a?b=1&c=[2]#f", "http://x.example/a?b=1&c=[2]#f"),
    ("https://x.example/\"><img src=x onerror=alert('og')>",
     "https://x.example/%22%3E%3Cimg%20src=x%20onerror=alert(%27og%27)%3E"),
    ("javascript:alert(1)", ""), (" JavaScript:alert(1)", ""), ("data:text/html,<script>", ""),
    ("//x.example/", ""), ("https:///x", ""), ("ftp://x.example/", ""), ("", ""), ("http://[::1", ""),
])
def test_http_url_keeps_only_http_urls_safe_for_attributes(url: str, expected: str) -> None:
    assert http_url(url) == expected


def test_md_link_or_text_links_only_http_urls() -> None:
    link = '<a href="https://x.example/a%22b">https://x\\.example/a&quot;b</a>'
    assert md_link_or_text("https://x.example/a\"b") == link
    for value in ("javascript:alert(1)", "data:text/html,x", "[x](javascript:alert(1))"):
        parsed = _Parsed(_render(md_link_or_text(value)))
        assert [t for t, _ in parsed.tags] == ["p"] and "".join(parsed.text) == value


def test_html_text_is_one_escaped_line() -> None:
    assert html_text("<b a=\"1\">'x'\n\n&y</b>") == "&lt;b a=&quot;1&quot;&gt;&#x27;x&#x27; &amp;y&lt;/b&gt;"


def _model(title: str) -> dict:
    head = {"layer": 0, "head": 0, "kv_head": 0, "label": "broad", "thumbs": {"pca-2d": "thumbs/L0H0.png"},
            "metrics": {"first_token": 0.5}, "norm": {"scale": 1.0}}
    return {"layouts": ["pca-2d"], "heads": [head], "tokens": {"file": "tokens.arrow"},
            "model": {"num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 8, "causal": False},
            "dataset": {"num_tokens": 3, "num_sentences": 1}}


def _front_matter(page: str) -> dict:
    return yaml.safe_load(page.split("---\n")[1])


def test_head_and_matrix_pages_escape_titles_and_drop_unsafe_base_urls() -> None:
    title = "<script>alert('t')</script> [x](javascript:alert(1))"
    m = _model(title)
    for base, og in [("javascript:alert(1)//", "../../../../data/tiny/thumbs/L0H0.png"),
                     ("https://x.example/\"><img src=x>", "https://x.example/%22%3E%3Cimg%20src=x%3E/data/tiny/"
                                                          "thumbs/L0H0.png")]:
        page = head_page("tiny", title, m, m["heads"][0], None, None, base)
        meta = _front_matter(page)
        assert meta["og_image"] == og
        assert meta["title"] == html_text(f"{title} · layer 0 · head 0")
        body = _Parsed(_render(page.split("---\n", 2)[2]))
        assert "script" not in {t for t, _ in body.tags}
        assert [a for t, a in body.tags if t == "a" and "javascript" in a.get("href", "")] == []
        assert title in "".join(body.text)
    matrix = matrix_page("tiny", title, m)
    assert _front_matter(matrix)["title"] == html_text(title)
    assert f"# {md_text(title)}\n" in matrix


def test_mkdocs_config_escapes_names_and_keeps_only_http_urls(tmp_path: Path) -> None:
    def config(**site: str) -> dict:
        manifest = Manifest(path=tmp_path / "m.toml", site=SiteSpec(**site), build=BuildSpec(), datasets=(), models=())
        return mkdocs_config(manifest, [], tmp_path / "docs", tmp_path / "site")

    cfg = config(title="<script>x</script>", description="\"a\" & b", base_url="javascript:alert(1)",
                 repo_url="data:text/html,x")
    assert cfg["site_name"] == "&lt;script&gt;x&lt;/script&gt;" and cfg["site_description"] == "&quot;a&quot; &amp; b"
    assert "site_url" not in cfg and "repo_url" not in cfg
    assert Path(cfg["hooks"][0]).is_file()
    cfg = config(base_url="https://x.example/\"><i>", repo_url="https://x.example/r")
    assert cfg["site_url"] == "https://x.example/%22%3E%3Ci%3E" and cfg["repo_url"] == "https://x.example/r"


def test_instant_navigation_only_with_a_site_url_and_both_schemes(tmp_path: Path) -> None:
    def config(**site: str) -> dict:
        manifest = Manifest(path=tmp_path / "m.toml", site=SiteSpec(**site), build=BuildSpec(), datasets=(), models=())
        return mkdocs_config(manifest, [], tmp_path / "docs", tmp_path / "site")

    with_url = config(base_url="https://user.github.io/repo/")
    assert with_url["site_url"] == "https://user.github.io/repo/"
    assert "navigation.instant" in with_url["theme"]["features"]
    assert not any(f.startswith("navigation.instant") for f in config()["theme"]["features"])
    schemes = [p["scheme"] for p in with_url["theme"]["palette"]]
    assert schemes == ["default", "slate"] and all("toggle" in p for p in with_url["theme"]["palette"])
