"""The built site served under a sub-path, as GitHub Pages serves a project site (https://user.github.io/repo/):
home → matrix page → head page → sentence view → next head, with no 404, console error or page error. Without a
base_url every link is a full page load; with one (site_url) Material's instant navigation keeps the document."""

from __future__ import annotations

import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from atlas_build import build
from atlas_build.manifest import load_manifest
from atlas_build.notebook import manifest_dict
from helpers import client_position, wait_head

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
PREFIX = "/some/sub/path/"
MODEL = "tiny-bert"


class _SubPathHandler(SimpleHTTPRequestHandler):
    """Serves the site folder under PREFIX only; every other path is a 404."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        inner = clean[len(PREFIX) - 1:] if clean.startswith(PREFIX) else "/\0missing"
        return super().translate_path(inner)


class SubPathServer:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{PREFIX}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self, *args, **kwargs):
        return _SubPathHandler(*args, directory=str(self.root), **kwargs)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sub_server() -> Iterator[SubPathServer]:
    server = SubPathServer()
    try:
        yield server
    finally:
        server.close()


def walk(tab, url: str) -> bool:
    """Walks the site from its home page; returns whether it stayed one document (instant navigation)."""
    page = tab.page
    bad: list[str] = []
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url)
    page.evaluate("window.__sameDocument = true")
    page.locator(f".md-content a[href$='models/{MODEL}/']").first.click()
    page.wait_for_function("(() => { const v = document.querySelector('.atlas-view[data-view=matrix]');"
                           " return v && v.dataset.loaded === 'true'; })()")
    assert page.evaluate("location.pathname") == f"{PREFIX}models/{MODEL}/"
    page.locator(".atlas-matrix-cell[data-layer='0'][data-head='0']").click()
    wait_head(page, 0, 0)
    assert page.evaluate("location.pathname") == f"{PREFIX}models/{MODEL}/L0/H0/"
    point = page.evaluate("document.querySelector('.atlas-view').atlasView.attrs.pointId[0]")
    page.mouse.click(*client_position(page, point))
    page.locator(".atlas-sentence").wait_for(state="visible")
    page.wait_for_function("document.querySelectorAll('.atlas-bipartite text.atlas-token').length > 0")
    page.locator(".atlas-next").click()
    wait_head(page, 0, 1)
    assert page.evaluate("location.pathname") == f"{PREFIX}models/{MODEL}/L0/H1/"
    assert not bad, bad
    assert not tab.errors, tab.errors
    return page.evaluate("window.__sameDocument === true")


def test_full_page_loads_without_base_url(tiny_build, sub_server, tab):
    sub_server.root = tiny_build / "site"
    assert "navigation.instant" not in (tiny_build / "site" / "index.html").read_text("utf-8")
    assert not walk(tab, sub_server.url), "expected full page loads"


def test_instant_navigation_with_base_url(tmp_path, sub_server, tab):
    data = manifest_dict(load_manifest(REPO / "data_manifests" / "tiny.toml"))
    data["site"]["base_url"] = sub_server.url
    report = build(data, tmp_path / "out", base_dir=REPO / "data_manifests")
    sub_server.root = report.site_dir
    assert "navigation.instant" in (report.site_dir / "index.html").read_text("utf-8")
    assert walk(tab, sub_server.url), "instant navigation fell back to full page loads"
    assert tab.page.evaluate("window.atlasViews.size") == 1
