"""Adjacent-head navigation under mkdocs-material's instant navigation, history, and view teardown."""

from __future__ import annotations

import pytest

import synthetic_site as ss
from helpers import KEY_RGB, QUERY_RGB, count_rgb, open_head, pixels, wait_head

pytestmark = pytest.mark.browser


def path_of(page) -> str:
    return page.evaluate("location.pathname")


def test_keyboard_links_and_history(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{ss.MODEL}/L0/H0/")
    page.evaluate("window.__sameDocument = true")
    page.locator("select[aria-label=colour]").select_option("position")
    page.keyboard.press("ArrowRight")
    wait_head(page, 0, 1)
    assert path_of(page) == f"/models/{ss.MODEL}/L0/H1/"
    # the colour choice travels with the navigation
    assert page.locator("select[aria-label=colour]").input_value() == "position"
    page.locator("select[aria-label=colour]").select_option("qk")
    page.locator(".atlas-next").click()
    wait_head(page, 1, 0)
    page.keyboard.press("ArrowUp")
    wait_head(page, 0, 0)
    page.go_back()
    wait_head(page, 1, 0)
    assert path_of(page) == f"/models/{ss.MODEL}/L1/H0/"
    page.go_back()
    wait_head(page, 0, 1)
    page.go_forward()
    wait_head(page, 1, 0)
    img = pixels(page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert page.evaluate("window.__sameDocument === true"), "instant navigation fell back to full page loads"
    assert page.evaluate("window.atlasViews.size") == 1
    assert page.locator(".atlas-canvas").count() == 1
    assert not tab.errors and not tab.dialogs


def test_arrow_keys_ignored_while_typing(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{ss.MODEL}/L0/H1/")
    page.click(".atlas-search")
    page.keyboard.type("cat")
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(150)
    assert path_of(page) == f"/models/{ss.MODEL}/L0/H1/"
    assert page.locator(".atlas-next").get_attribute("href").endswith("#search=cat")


def test_first_and_last_heads_have_no_outer_neighbours(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{ss.MODEL}/L0/H0/")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    page.wait_for_timeout(150)
    assert path_of(page) == f"/models/{ss.MODEL}/L0/H0/"
    page.keyboard.press("ArrowDown")
    wait_head(page, 1, 0)
    page.keyboard.press("ArrowRight")
    wait_head(page, 1, 1)
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(150)
    assert path_of(page) == f"/models/{ss.MODEL}/L1/H1/"


def test_matrix_to_head_and_back(synthetic, tab):
    page = tab.page
    page.goto(f"{synthetic.url}models/{ss.MODEL}/")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    page.evaluate("window.__sameDocument = true")
    page.locator(".atlas-matrix-cell[data-layer='1'][data-head='0']").click()
    wait_head(page, 1, 0)
    page.go_back()
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert page.locator(".atlas-matrix-cell").count() == ss.LAYERS * ss.HEADS
    assert page.evaluate("window.__sameDocument === true")
    assert page.evaluate("window.atlasViews.size") == 1
