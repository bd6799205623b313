"""Fixtures for the browser tests: a static server on 127.0.0.1 over a built site, and Debian chromium pages."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

import synthetic_site

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".arrow": "application/vnd.apache.arrow.file", ".bin": "application/octet-stream"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=600")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticServer:
    """Serves a directory on 127.0.0.1 (ephemeral port) from a daemon thread; the directory may be filled later."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="static-site", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@dataclass
class SyntheticSite:
    url: str
    root: Path
    synth: synthetic_site.Synth


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyntheticSite]:
    work = tmp_path_factory.mktemp("synthetic")
    server = StaticServer(work / "site")
    try:
        synth = synthetic_site.build_site(work, server.url)
        yield SyntheticSite(server.url, work / "site", synth)
    finally:
        server.close()


@pytest.fixture(scope="session")
def tiny_site(tiny_build: Path) -> Iterator[tuple[str, Path]]:
    """The real pipeline's site for data_manifests/tiny.toml (built once per session by tests/conftest.py)."""
    server = StaticServer(tiny_build / "site")
    try:
        yield server.url, tiny_build / "site"
    finally:
        server.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """A chromium page plus what it reported: dialogs that opened (and were dismissed), uncaught errors."""

    page: object
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def browser_context(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def tab(browser_context) -> Iterator[Tab]:
    page = browser_context.new_page()
    page.set_default_timeout(10_000)
    t = Tab(page)
    page.on("dialog", lambda d: (t.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: t.errors.append(str(e)))
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: t.requests.append(r.url))
    try:
        yield t
    finally:
        page.close()
