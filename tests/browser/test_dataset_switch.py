"""The dataset switcher of a model on two datasets (tests/two_datasets.py): on a head page and on a matrix page it
opens the same view on the other dataset, keeping layer, head, layout, colour and search, and the URL names it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from atlas_build.export import read_table
from helpers import wait_head
from two_datasets import FIRST, MODEL, SECOND, two_dataset_build

pytestmark = pytest.mark.browser
STATE = {"layout": "tsne-2d", "colour": "position", "search": "the"}  # none of them the default


@pytest.fixture(scope="module")
def two_site(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory, serve) -> tuple[str, Path]:
    site = two_dataset_build(tiny_build, tmp_path_factory).out / "site"
    return serve(site), site


def _hits(site: Path, dataset: str, word: str) -> int:
    """Query and key points whose token is `word`: what the search count must show."""
    text = read_table(site / "data" / MODEL / dataset / "tokens.arrow").column("text").to_pylist()
    return 2 * sum(t.strip().lower() == word for t in text)


def _state(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


def test_head_page_switches_dataset_and_keeps_the_view(two_site, tab) -> None:
    url, site = two_site
    page = tab.page
    start = "&".join(f"{k}={v}" for k, v in STATE.items())
    page.goto(f"{url}models/{MODEL}/{FIRST}/L1/H2/#{start}&point=3")
    wait_head(page, 1, 2)
    page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === "
                           f"'{_hits(site, FIRST, 'the')}'")
    assert page.locator(".atlas-dataset-select").input_value() == FIRST
    # the page's own dataset link carries the state too (without the point: point ids are per dataset)
    link = page.locator(f"a.atlas-dataset-link[href^='../../../{SECOND}/L1/H2/']").get_attribute("href")
    assert _state(link) == STATE

    page.locator(".atlas-dataset-select").select_option(SECOND)
    page.wait_for_url(f"**/models/{MODEL}/{SECOND}/L1/H2/**")
    wait_head(page, 1, 2)
    assert urlsplit(page.url).path == f"/models/{MODEL}/{SECOND}/L1/H2/"
    assert _state(page.url) == STATE
    view = page.evaluate("(() => { const v = document.querySelector('.atlas-view'); "
                         "return {state: v.atlasView.state, data: v.dataset.data, dataset: v.dataset.dataset}; })()")
    assert {k: view["state"][k] for k in STATE} == STATE and view["state"]["point"] is None
    assert view["dataset"] == SECOND and view["data"].endswith(f"data/{MODEL}/{SECOND}/")
    assert page.locator(".atlas-toolbar select[aria-label=layout]").input_value() == "tsne-2d"
    assert page.locator(".atlas-toolbar select[aria-label=colour]").input_value() == "position"
    assert page.locator(".atlas-search").input_value() == "the"
    assert page.locator(".atlas-dataset-select").input_value() == SECOND
    hits = _hits(site, SECOND, "the")
    assert hits > 0
    page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{hits}'")
    assert not tab.errors and not tab.dialogs


def test_matrix_page_switches_dataset_and_keeps_the_view(two_site, tab) -> None:
    url, site = two_site
    page = tab.page
    start = "&".join(f"{k}={v}" for k, v in STATE.items())
    page.goto(f"{url}models/{MODEL}/{SECOND}/#{start}")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    page.locator(".atlas-dataset-select").select_option(FIRST)
    page.wait_for_url(f"**/models/{MODEL}/{FIRST}/#*")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert urlsplit(page.url).path == f"/models/{MODEL}/{FIRST}/" and _state(page.url) == STATE
    state = page.evaluate("document.querySelector('.atlas-view').atlasView.state")
    assert {k: state[k] for k in STATE} == STATE
    assert page.locator(".atlas-matrix-cell").count() == 8
    # every cell opens its head on this dataset with the same state
    href = page.locator(".atlas-matrix-cell[data-layer='1'][data-head='2']").get_attribute("href")
    assert href.startswith("L1/H2/") and _state(href) == STATE
    per_head = _hits(site, FIRST, "the")
    page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{8 * per_head}'")
    assert not tab.errors and not tab.dialogs


def test_a_heads_one_dataset_url_leads_to_its_first_dataset(two_site, tab) -> None:
    url, _ = two_site
    page = tab.page
    page.goto(f"{url}models/{MODEL}/L0/H1/#layout=tsne-2d")
    wait_head(page, 0, 1)
    assert urlsplit(page.url).path == f"/models/{MODEL}/{FIRST}/L0/H1/" and _state(page.url) == {"layout": "tsne-2d"}
