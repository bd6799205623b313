"""Pan and zoom of a 250k-point head in headless Debian chromium (Playwright): frame times and first draw (not a
test).

Writes the synthetic large-head site of tests/browser/synthetic_large.py (125k tokens = 250k points, tile pyramid
from the exporter) into a temporary folder, serves it on 127.0.0.1, and for each of ``--runs`` fresh browser
contexts (cold cache) opens the head page and:

* first draw: the head view's `atlas:first-draw` performance mark, in ms from navigation start;
* drag: the mouse pans the plot in ``--steps`` moves of 6 px; zoom: ``--steps`` wheel events, in then out;
* frame time: the duration of every animation frame in which the plot redrew during a gesture (from the moment
  that frame's callbacks ran to the moment the next frame's did), median and 95th percentile over all runs; also
  the median time of the scatter's own draw() calls (main-thread JavaScript).

``--view 3d`` uses the 3D layout (drag orbits); ``--webgl-probe`` also draws the same points with a minimal
WebGL2 renderer (one draw call per frame, data uploaded once) and reports its frame times: what a WebGL path would
cost in this browser (headless chromium here has SwiftShader's software WebGL only). Targets (issue #19): median
≤ 33 ms, p95 ≤ 60 ms, first draw ≤ 1.5 s.

    python benchmarks/bench_large_head_browser.py [--tokens 125000] [--runs 3] [--steps 60] [--view 2d|3d]
        [--webgl-probe] [--site DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_large  # noqa: E402
from bench_site import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

RECORDER = """() => {
  const view = document.querySelector('.atlas-view').atlasView;
  const s = view.scatter;
  window.__frames = []; window.__draws = []; window.__recording = false;
  const draw = s.draw.bind(s);
  s.draw = () => {
    const t = performance.now();
    draw();
    if (window.__recording) window.__draws.push(performance.now() - t);
  };
  // performance.now(), not the callback's argument: that is the frame's scheduled start, which a long frame passes
  const tick = () => {
    if (window.__recording) window.__frames.push([performance.now(), window.__draws.length]);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""

# The same points drawn by a minimal WebGL2 point renderer (one draw call, positions and colours uploaded once, the
# pan a uniform), on a canvas of the plot's size over the page: what a WebGL path would cost on this browser.
WEBGL_PROBE = """async (frames) => {
  const s = document.querySelector('.atlas-view').atlasView.scatter;
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [s.canvas.width, s.canvas.height];
  Object.assign(canvas.style, { position: 'fixed', left: '0px', top: '0px', zIndex: 9 });
  document.body.append(canvas);
  const gl = canvas.getContext('webgl2', { antialias: false });
  if (!gl) return null;
  const src = (type, text) => {
    const sh = gl.createShader(type);
    gl.shaderSource(sh, text);
    gl.compileShader(sh);
    return sh;
  };
  const prog = gl.createProgram();
  gl.attachShader(prog, src(gl.VERTEX_SHADER, `#version 300 es
    in vec2 p; in vec3 c; uniform vec2 size; uniform vec2 off; uniform float ps; out vec3 v;
    void main() {
      vec2 q = (p + off) / size * 2.0 - 1.0;
      gl_Position = vec4(q.x, -q.y, 0, 1);
      gl_PointSize = ps;
      v = c;
    }`));
  gl.attachShader(prog, src(gl.FRAGMENT_SHADER, `#version 300 es
    precision mediump float; in vec3 v; out vec4 o;
    void main() { vec2 d = gl_PointCoord * 2.0 - 1.0; if (dot(d, d) > 1.0) discard; o = vec4(v, 1); }`));
  gl.linkProgram(prog);
  gl.useProgram(prog);
  const n = s.n;
  const xy = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) [xy[2 * i], xy[2 * i + 1]] = [s.sx[i], s.sy[i]];
  const attr = (name, data, size, type, norm) => {
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const at = gl.getAttribLocation(prog, name);
    gl.enableVertexAttribArray(at);
    gl.vertexAttribPointer(at, size, type, norm, 0, 0);
  };
  attr('p', xy, 2, gl.FLOAT, false);
  attr('c', s.style.rgb, 3, gl.UNSIGNED_BYTE, true);
  gl.uniform2f(gl.getUniformLocation(prog, 'size'), s.w, s.h);
  gl.uniform1f(gl.getUniformLocation(prog, 'ps'), 2 * s.style.radius + 1);
  const off = gl.getUniformLocation(prog, 'off');
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  const stamps = await new Promise((done) => {
    const t = [];
    const tick = (now) => {
      t.push(now);
      gl.uniform2f(off, t.length % 40, t.length % 25);
      gl.clearColor(1, 1, 1, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.drawArrays(gl.POINTS, 0, n);
      if (t.length > frames) done(t); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  canvas.remove();
  return { renderer, intervals: stamps.slice(2).map((v, i) => v - stamps[i + 1]) };
}"""


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def gesture(page, kind: str, steps: int) -> tuple[list[float], list[float]]:
    """Frame intervals and draw() times (ms) of one gesture over the plot's centre."""
    box = page.locator(".atlas-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.wait_for_timeout(200)
    page.evaluate("window.__frames = []; window.__draws = []; window.__recording = true")
    if kind == "drag":
        page.mouse.down()
        for i in range(steps):
            dx = 6 if (i // 20) % 2 == 0 else -6
            page.mouse.move(cx + dx * (i % 20), cy + dx * (i % 20) / 2)
        page.mouse.up()
    else:
        for i in range(steps):
            page.mouse.wheel(0, -60 if i < steps // 2 else 60)
    page.wait_for_timeout(100)
    frames, draws = page.evaluate("window.__recording = false; [window.__frames, window.__draws]")
    # this recorder's callback runs first in every frame, so a draw between two ticks happened in the first one's frame
    intervals = [b[0] - a[0] for a, b in zip(frames, frames[1:]) if b[1] > a[1]]
    return intervals, draws


def run(url: str, args: argparse.Namespace, browser) -> dict:
    context = browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    layout = "" if args.view == "2d" else "#layout=pca-3d"
    page.goto(f"{url}models/{synthetic_large.MODEL}/L0/H0/{layout}")
    page.wait_for_function("performance.getEntriesByName('atlas:first-draw').length === 1", timeout=60_000)
    first = page.evaluate("performance.getEntriesByName('atlas:first-draw')[0].startTime")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.state === 'ready'")
    page.evaluate(RECORDER)
    mode = page.evaluate("document.querySelector('.atlas-view').dataset.drawMode")
    out = {"first": first, "mode": mode, "frames": [], "draws": [], "errors": errors}
    for kind in ("drag", "wheel"):
        frames, draws = gesture(page, kind, args.steps)
        out["frames"] += frames
        out["draws"] += draws
        out[kind] = statistics.median(frames) if frames else float("nan")
    if args.webgl_probe:
        out["webgl"] = page.evaluate(WEBGL_PROBE, 20)
    context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=125_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--view", choices=("2d", "3d"), default="2d")
    ap.add_argument("--webgl-probe", action="store_true", help="also time a minimal WebGL2 renderer of the points")
    ap.add_argument("--site", type=Path, help="reuse (or write once) the site in this folder; its JS is refreshed")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-large-browser-") as tmp:
        work = args.site or Path(tmp)
        site = work / "site"
        if not (site / "data" / synthetic_large.MODEL / "manifest.json").exists():
            synthetic_large.build_site(work, "http://127.0.0.1/", args.tokens)
        shutil.copytree(ROOT / "site_templates" / "assets", site / "assets", dirs_exist_ok=True)  # the current JS
        httpd, url = serve(site)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                runs = [run(url, args, browser) for _ in range(args.runs)]
                browser.close()
        finally:
            httpd.shutdown()
    frames = [f for r in runs for f in r["frames"]]
    draws = [d for r in runs for d in r["draws"]]
    print(f"{2 * args.tokens:,} points, {args.view}, Canvas2D (draw mode {runs[0]['mode']}), "
          f"{args.runs} runs, {len(frames)} frames")
    print(f"  first draw: median {statistics.median(r['first'] for r in runs):.0f} ms "
          f"(runs: {', '.join(str(round(r['first'])) for r in runs)})")
    print(f"  frame time: median {statistics.median(frames):.1f} ms, p95 {percentile(frames, 95):.1f} ms "
          f"(drag median {statistics.median(r['drag'] for r in runs):.1f}, "
          f"wheel median {statistics.median(r['wheel'] for r in runs):.1f})")
    print(f"  draw() on the main thread: median {statistics.median(draws):.1f} ms, p95 {percentile(draws, 95):.1f} ms "
          f"({len(draws)} draws)")
    probes = [r["webgl"] for r in runs if r.get("webgl")]
    if probes:
        gl = [v for p in probes for v in p["intervals"]]
        print(f"  WebGL2 probe ({probes[0]['renderer']}): frame median {statistics.median(gl):.0f} ms, "
              f"p95 {percentile(gl, 95):.0f} ms ({len(gl)} frames)")
    elif args.webgl_probe:
        print("  WebGL2 probe: no WebGL2 context")
    errors = [e for r in runs for e in r["errors"]]
    if errors:
        print("  page errors: " + "; ".join(errors[:3]))


if __name__ == "__main__":
    main()
