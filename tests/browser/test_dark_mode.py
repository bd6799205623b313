"""Light ("default") and dark ("slate") schemes: every view's background, text and canvas follow the scheme, at
load (the system preference picks the first scheme) and when the reader flips Material's palette toggle."""

from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import pytest

import synthetic_images as si
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels, wait_head

pytestmark = pytest.mark.browser
MODEL = "tiny-bert"


@pytest.fixture
def scheme_tab(browser) -> Iterator:
    """new(scheme) → a page in a fresh context (its own stored palette) preferring "light" or "dark"."""
    contexts = []

    def new(scheme: str):
        contexts.append(browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1,
                                            color_scheme=scheme))
        page = contexts[-1].new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.atlas_errors = errors
        return page

    yield new
    for context in contexts:
        context.close()


def background(img: np.ndarray) -> np.ndarray:
    """The most common colour of a screenshot."""
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    return colours[counts.argmax()]


def luminance(rgb) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(float(c)) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def css_rgb(text: str, under: np.ndarray) -> np.ndarray:
    """A computed CSS colour (rgb/rgba) composited over `under`."""
    parts = [float(x) for x in re.findall(r"[\d.]+", text)]
    alpha = parts[3] if len(parts) > 3 else 1.0
    return np.array(parts[:3]) * alpha + under * (1 - alpha)


def contrast(a, b) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def is_dark(rgb) -> bool:
    return luminance(rgb) < 0.1


def toggle(page) -> None:
    """Flip the scheme as a reader does: the header's palette toggle."""
    before = page.evaluate("document.body.dataset.mdColorScheme")
    page.locator("form[data-md-component=palette] label:visible").first.click()
    page.wait_for_function(f"document.body.dataset.mdColorScheme !== '{before}'")
    page.wait_for_timeout(200)


def head_canvas(page) -> np.ndarray:
    img = pixels(page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    return img


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_head_and_sentence_views_follow_the_scheme(tiny_site, scheme_tab, scheme):
    url, _ = tiny_site
    page = scheme_tab(scheme)
    open_head(page, f"{url}models/{MODEL}/L0/H1/")
    assert page.evaluate("document.body.dataset.mdColorScheme") == ("slate" if scheme == "dark" else "default")
    assert is_dark(background(head_canvas(page))) == (scheme == "dark")
    point = page.evaluate("document.querySelector('.atlas-view').atlasView.attrs.pointId[0]")
    page.mouse.click(*client_position(page, point))
    page.wait_for_function("document.querySelectorAll('.atlas-bipartite text.atlas-token').length > 0")
    page_bg = background(pixels(page.locator(".atlas-sentence")))
    text = css_rgb(page.evaluate("getComputedStyle(document.querySelector('.atlas-token:not(.is-focus)')).fill"), page_bg)
    title = page.evaluate("getComputedStyle(document.querySelector('.atlas-sentence-title')).color")
    label = css_rgb(title, page_bg)
    assert is_dark(page_bg) == (scheme == "dark")
    assert contrast(text, page_bg) >= 4.5 and contrast(label, page_bg) >= 4.5
    toggle(page)
    assert is_dark(background(head_canvas(page))) != (scheme == "dark")
    assert is_dark(background(pixels(page.locator(".atlas-sentence")))) != (scheme == "dark")
    assert not page.atlas_errors


def test_matrix_view_in_the_dark_draws_points_on_a_dark_background(tiny_site, scheme_tab):
    url, _ = tiny_site
    page = scheme_tab("light")
    page.goto(f"{url}models/{MODEL}/")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    cell = page.locator(".atlas-matrix-cell[data-layer='0'][data-head='0'] .atlas-cell-plot")
    assert not is_dark(background(pixels(cell)))
    toggle(page)
    page.wait_for_function("document.querySelector(\".atlas-matrix-cell[data-layer='0'][data-head='0']\")"
                           ".dataset.drawn === 'true'")
    page.wait_for_timeout(200)
    img = pixels(cell)
    assert is_dark(background(img))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert not page.atlas_errors


def test_image_view_follows_the_scheme(synthetic, scheme_tab):
    page = scheme_tab("light")
    open_head(page, f"{synthetic.url}models/{si.VIT}/L0/H0/")
    query = next(p for p in synthetic.synth.vit if (p.image, p.position, p.is_key) == (0, si.PREFIX + 5, 0))
    page.mouse.click(*client_position(page, query.point_id))
    page.wait_for_function("document.querySelector('.atlas-image-view').dataset.state === 'drawn'")
    aggregate = page.locator(".atlas-image-aggregate canvas")
    aggregate.wait_for(state="visible")
    arrows_light = pixels(page.locator(".atlas-image-arrows"))
    assert not is_dark(background(pixels(aggregate)))
    toggle(page)
    assert is_dark(background(pixels(aggregate)))
    arrows_dark = pixels(page.locator(".atlas-image-arrows"))
    assert arrows_dark.mean() < arrows_light.mean() - 40
    assert not page.atlas_errors
