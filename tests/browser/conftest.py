"""Fixtures for the browser tests: a static server on 127.0.0.1 over a built site, and Debian chromium pages."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

import synthetic_site

REPO = Path(__file__).resolve().parents[2]
VISION_MANIFEST = REPO / "data_manifests" / "vision-tiny.toml"
VISION_BUILD = ("import sys\nfrom atlas_build.pipeline import build\n"
                "build(sys.argv[1], sys.argv[2], jobs=1, log=lambda msg: None)")
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
def serve() -> Iterator[Callable[[Path], str]]:
    """serve(root) → the URL of a StaticServer over `root`, closed at the end of the session."""
    servers: list[StaticServer] = []

    def start(root: Path) -> str:
        servers.append(StaticServer(root))
        return servers[-1].url

    try:
        yield start
    finally:
        for server in servers:
            server.close()


_vision: dict[str, object] = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Start the vision-tiny build in a subprocess as soon as a selected test needs it, so it overlaps the others."""
    if _vision or not any("vision_site" in getattr(item, "fixturenames", ()) for item in items):
        return
    out = Path(tempfile.mkdtemp(prefix="atlas-vision-tiny-"))
    log = open(out / "build.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", VISION_BUILD, str(VISION_MANIFEST), str(out / "build")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    _vision.update(out=out, proc=proc, log=log)


def pytest_unconfigure(config) -> None:
    proc = _vision.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    if _vision:
        _vision["log"].close()
        shutil.rmtree(_vision["out"], ignore_errors=True)


@pytest.fixture(scope="session")
def vision_site() -> Iterator[tuple[str, Path]]:
    """The real pipeline's site for data_manifests/vision-tiny.toml (built by atlas_build.pipeline.build)."""
    if "proc" not in _vision:
        pytest.skip("the vision build was not started")
    proc, out = _vision["proc"], _vision["out"]
    if proc.wait(timeout=900) != 0:
        tail = (out / "build.log").read_text("utf-8", "replace")[-3000:]
        pytest.fail(f"building {VISION_MANIFEST.name} failed:\n{tail}")
    server = StaticServer(out / "build" / "site")
    try:
        yield server.url, out / "build" / "site"
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
