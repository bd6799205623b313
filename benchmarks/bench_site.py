"""Bytes fetched and drawing times of a built atlas site in Debian chromium (Playwright), cold cache (not a test).

Serves the site directory on 127.0.0.1 (plain static files, no compression), then for every model (or the one
given) opens a head page and the model's matrix page `--runs` times, each in a fresh browser context, and
reports medians:

* bytes fetched, split into data (`data/…`), JS+CSS and other (HTML, fonts, images of the theme), each raw, as
  its gzip-equivalent size, and as GitHub Pages serves it ("served": html/js/css/json/xml/svg/txt gzip-compressed,
  Arrow, binary and PNG files as they are);
* DOMContentLoaded of the page, for reference (the theme's own cost);
* head page: time to first draw (the `atlas:first-draw` performance mark the head view sets when its canvas
  first shows the points, in ms from navigation start);
* matrix page: time to first drawn cell (`atlas:first-draw`) and time to interactive (`atlas:interactive`:
  every head in view fetched and drawn, controls live).

Issue 7's targets: head page ≤ 300 KB and first draw ≤ 1 s on localhost; matrix view interactive ≤ 2 s.

    python benchmarks/bench_site.py [SITE_DIR (default build/demo/site)] [--model NAME] [--head L0H0] [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import statistics
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KINDS = ("data", "js+css", "other")
UNITS = ("raw", "gzip", "served")
#: What GitHub Pages compresses (by content type); everything else (.arrow, .bin, .png) goes out as it is.
COMPRESSED = (".html", ".js", ".mjs", ".css", ".json", ".xml", ".svg", ".txt")


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".arrow": "application/vnd.apache.arrow.file", ".bin": "application/octet-stream"}

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def kind_of(path: str) -> str:
    if path.startswith("/data/"):
        return "data"
    return "js+css" if path.endswith((".js", ".mjs", ".css")) else "other"


@functools.lru_cache(maxsize=None)
def sizes(file: Path) -> tuple[int, int, int]:
    """(raw, gzip, served) bytes of a file."""
    raw = file.read_bytes()
    packed = len(gzip.compress(raw, 6, mtime=0))
    return len(raw), packed, packed if file.suffix in COMPRESSED else len(raw)


def local_file(root: Path, url: str) -> Path | None:
    path = unquote(urlsplit(url).path)
    file = root / path.lstrip("/")
    if file.is_dir():
        file = file / "index.html"
    return file if file.is_file() else None


def measure(browser, root: Path, url: str, ready: str, marks: list[str]) -> dict:
    """One cold load: bytes by kind (raw and gzip) and the performance marks' start times in ms."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    fetched: list[str] = []
    page.on("requestfinished", lambda r: fetched.append(r.url))
    page.goto(url)
    page.wait_for_function(ready, timeout=60_000)
    times = page.evaluate("(names) => names.map((n) => { const e = n === 'domcontentloaded' ? "
                          "{ startTime: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd } : "
                          "performance.getEntriesByName(n)[0]; return e ? e.startTime : null; })", marks)
    page.wait_for_timeout(300)
    out = {f"{k} {unit}": 0 for k in KINDS for unit in UNITS}
    out["requests"] = 0
    for u in fetched:
        file = local_file(root, u)
        if file is None:
            continue
        kind = kind_of(urlsplit(u).path)
        for unit, n in zip(UNITS, sizes(file)):
            out[f"{kind} {unit}"] += n
        out["requests"] += 1
    out.update({m: t for m, t in zip(marks, times)})
    context.close()
    return out


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) if all(r[k] is not None for r in runs) else None
            for k in runs[0]}


def report(title: str, med: dict, marks: list[str]) -> None:
    total = {unit: sum(med[f"{k} {unit}"] for k in KINDS) / 1024 for unit in UNITS}
    print(f"  {title}: {med['requests']:.0f} requests, {total['raw']:.0f} KB ({total['gzip']:.0f} KB gzip, "
          f"{total['served']:.0f} KB as GitHub Pages serves it)")
    for k in KINDS:
        print(f"    {k:7s} {med[f'{k} raw'] / 1024:8.1f} KB   gzip {med[f'{k} gzip'] / 1024:8.1f} KB   "
              f"served {med[f'{k} served'] / 1024:8.1f} KB")
    for m in marks:
        value = "not reached" if med[m] is None else f"{med[m]:.0f} ms"
        print(f"    {m:19s} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="build/demo/site", type=Path)
    parser.add_argument("--model", help="one model (default: every model under data/)")
    parser.add_argument("--head", default="L0H0", help="head page to open, e.g. L3H5 (default L0H0)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = args.site.resolve()
    models = sorted(p.parent.name for p in (root / "data").glob("*/manifest.json"))
    if args.model:
        models = [m for m in models if m == args.model]
    if not models:
        print(f"no built models under {root / 'data'}", file=sys.stderr)
        return 2
    layer, head = (int(x) for x in args.head.upper().lstrip("L").split("H"))
    from playwright.sync_api import sync_playwright

    httpd, base = serve(root)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            print(f"site {root} · chromium {browser.version} · {args.runs} cold runs each, medians")
            for model in models:
                manifest = json.loads((root / "data" / model / "manifest.json").read_text("utf-8"))
                print(f"{model}: {len(manifest['heads'])} heads, {manifest['points']['count']} points per head")
                head_marks = ["domcontentloaded", "atlas:first-draw"]
                head_ready = ("document.querySelector('.atlas-view')?.dataset.state === 'ready' && "
                              "performance.getEntriesByName('atlas:first-draw').length > 0")
                runs = [measure(browser, root, f"{base}models/{model}/L{layer}/H{head}/", head_ready, head_marks)
                        for _ in range(args.runs)]
                report(f"head page L{layer} H{head}", median_of(runs), head_marks)
                matrix_marks = ["domcontentloaded", "atlas:first-draw", "atlas:interactive"]
                matrix_ready = "performance.getEntriesByName('atlas:interactive').length > 0"
                runs = [measure(browser, root, f"{base}models/{model}/", matrix_ready, matrix_marks)
                        for _ in range(args.runs)]
                report("matrix page", median_of(runs), matrix_marks)
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
