"""The browser stage of benchmarks/bench_500_heads.py: cold loads of a matrix page in Debian chromium (Playwright),
timed in the page: every cell drawn, then a hover answered (not a test)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path


# Records, in the page, when every matrix cell first shows its picture (canvas bitmap or decoded thumbnail).
RECORDER = """(() => {
  window.__bench = {};
  const drawn = (c) => {
    if (c.dataset.drawn === 'true') return true;
    const img = c.querySelector('.atlas-cell-thumb');
    return !!img && !img.hidden && img.complete && img.naturalWidth > 0;
  };
  const tick = () => {
    const cells = document.querySelectorAll('.atlas-matrix-cell');
    if (cells.length && [...cells].every(drawn)) {
      window.__bench.allDrawn = performance.now();
      window.__bench.cells = cells.length;
    } else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})()"""
HOVER_READY = ("(([l, h]) => { const c = document.querySelector("
               "`.atlas-matrix-cell[data-layer='${l}'][data-head='${h}']`);"
               " return c && c.dataset.drawn === 'true'; })")


def matrix_load(browser, url: str, cell: tuple[int, int]) -> dict:
    """One cold load of the matrix page: ms from navigation start to every cell drawn; then ms from the pointer
    entering a cell to the tooltip of one of its points (the cell's points and the tokens fetched on the way)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.add_init_script(RECORDER)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.__bench && window.__bench.allDrawn", timeout=120_000)
    bench = page.evaluate("window.__bench")
    link = page.locator(f".atlas-matrix-cell[data-layer='{cell[0]}'][data-head='{cell[1]}']")
    link.scroll_into_view_if_needed()
    box = link.locator(".atlas-cell-plot").bounding_box()
    start = page.evaluate("performance.now()")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(HOVER_READY, arg=list(cell), timeout=60_000)
    pos = page.evaluate(f"(() => {{ const v = document.querySelector('.atlas-view').atlasView; "
                        f"return v.clientPosition({cell[0]}, {cell[1]}, v.model.attrs.pointId[0]); }})()")
    page.mouse.move(pos["x"], pos["y"])
    page.locator(".atlas-matrix-tooltip").wait_for(state="visible", timeout=60_000)
    hover = page.evaluate("performance.now()") - start
    interactive = page.evaluate("performance.getEntriesByName('atlas:interactive')[0]?.startTime ?? null")
    context.close()
    if errors:
        raise SystemExit(f"page errors: {errors}")
    return {"all_drawn_ms": bench["allDrawn"], "cells": bench["cells"], "hover_ms": hover,
            "mark_interactive_ms": interactive}


def stage_browser(site: Path, model: str, runs: int, results: dict, out: Path) -> None:
    from bench_site import CHROMIUM, CHROMIUM_ARGS, serve
    from playwright.sync_api import sync_playwright

    httpd, base = serve(site)
    url = f"{base}models/{model}/"
    manifest = json.loads((site / "data" / model / "manifest.json").read_text("utf-8"))["model"]
    layers, heads = manifest["num_layers"], manifest["num_heads"]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            print(f"browser: chromium {browser.version}, {runs} cold loads of {url}; load {os.getloadavg()[0]:.2f}",
                  flush=True)
            loads = []
            for i in range(runs):
                cell = ((layers // 2 + i) % layers, (heads // 2 + i) % heads)  # a new cell each load
                loads.append(matrix_load(browser, url, cell))
                print("  " + ", ".join(f"{k} {v:.0f}" for k, v in loads[-1].items() if v is not None), flush=True)
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    med = {k: statistics.median(r[k] for r in loads) for k in ("all_drawn_ms", "hover_ms")}
    med["interactive_ms"] = statistics.median(r["all_drawn_ms"] + r["hover_ms"] for r in loads)
    results["browser"] = {"runs": loads, "median": med, "cells": loads[0]["cells"], "load": os.getloadavg()[0]}
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
