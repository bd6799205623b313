"""The notebook API's inline views: the HTML of show_head / show_sentence, saved to a file and opened from file://,
draws with the site's own views and fetches nothing."""

from __future__ import annotations

import pytest

from atlas_build import show_head, show_sentence
from helpers import KEY_RGB, QUERY_RGB, count_rgb, pixels

pytestmark = pytest.mark.browser
MODEL = "tiny-bert"
READY = "(() => { const v = document.querySelector('.atlas-view'); return v && v.dataset.state === 'ready'; })()"


def open_inline(tab, view, path):
    view.save(path)
    tab.page.goto(path.as_uri())
    frame = tab.page.frames[1]
    frame.wait_for_function(READY)
    return frame


def test_show_head_draws_inline_without_network(tiny_build, tab, tmp_path):
    view = show_head(tiny_build, MODEL, 0, 1)
    assert view._repr_html_() == view.html and view.html.startswith("<iframe")
    assert "http://" not in view.html and "https://" not in view.html.replace("https://atlas.invalid/", "")
    frame = open_inline(tab, view, tmp_path / "head.html")
    img = pixels(tab.page.frame_locator("iframe").locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert frame.evaluate("document.querySelector('.atlas-side-title').textContent") == "Layer 0 · Head 1"
    assert all(url.startswith(("file:", "data:", "about:")) for url in tab.requests), tab.requests
    assert not tab.errors, tab.errors


def test_show_sentence_draws_the_sentence_view(tiny_build, tab, tmp_path):
    view = show_sentence(tiny_build / "site", MODEL, 1, 2, 3)
    frame = open_inline(tab, view, tmp_path / "sentence.html")
    frame.wait_for_function("document.querySelectorAll('.atlas-bipartite text.atlas-token').length > 0")
    assert frame.evaluate("document.querySelector('.atlas-sentence-title').textContent").startswith("Sentence 3 ·")
    assert frame.evaluate("document.querySelectorAll('.atlas-bipartite line').length") > 0
    assert frame.locator(".atlas-aggregate .atlas-bar").count() > 0
    assert all(url.startswith(("file:", "data:", "about:")) for url in tab.requests), tab.requests
    assert not tab.errors, tab.errors


def test_unknown_model_or_head_is_a_clear_error(tiny_build):
    with pytest.raises(KeyError, match="no model 'nope'.*tiny-bert"):
        show_head(tiny_build, "nope", 0, 0)
    with pytest.raises(KeyError, match="no head at layer 9"):
        show_head(tiny_build, MODEL, 9, 0)
    with pytest.raises(FileNotFoundError):
        show_head(tiny_build / "cache", MODEL, 0, 0)
