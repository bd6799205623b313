"""Large heads: tile pyramids in the head view, lazy head loading in the matrix view (synthetic site), the point
stamping of every frame against a reference, and a head of 60k points panned, zoomed and orbited."""

from __future__ import annotations

import re

import numpy as np
import pytest

import synthetic_images as si
import synthetic_large
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser
HEAD_FILE = re.compile(r"/data/synth-big/coords/L\d+H\d+_pca-2d\.bin\.gz$")
LARGE_TOKENS = 30_000


def draw_mode(page) -> str:
    return page.evaluate("document.querySelector('.atlas-view').dataset.drawMode")


def real_errors(tab) -> list[str]:
    """Console errors other than the 404s of tiles that were never written because they are empty."""
    return [e for e in tab.errors if "Failed to load resource" not in e]


def test_tiles_when_zoomed_out_points_when_zoomed_in(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{si.BIG}/L0/H0/")
    canvas = page.locator(".atlas-canvas")
    assert draw_mode(page) == "tiles"
    page.wait_for_function("performance.getEntriesByName('atlas:first-draw').length === 1")
    page.wait_for_timeout(300)
    img = pixels(canvas)
    assert count_rgb(img, si.TILE_RGB) > 1000 and count_rgb(img, QUERY_RGB) == 0
    assert any("/tiles/L0H0_pca-2d/" in url for url in tab.requests)

    page.fill(".atlas-search", "w5")
    page.wait_for_function("document.querySelector('.atlas-search-count').dataset.count === '32'")
    img = pixels(canvas)
    assert draw_mode(page) == "tiles" and 9 * 16 <= count_rgb(img, QUERY_RGB) and count_rgb(img, si.TILE_RGB) == 0
    page.fill(".atlas-search", "")

    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    for _ in range(8):
        page.mouse.wheel(0, -250)
        page.wait_for_timeout(50)
        if draw_mode(page) == "points":
            break
    assert draw_mode(page) == "points"
    img = pixels(canvas)
    assert count_rgb(img, QUERY_RGB) > 1000 and count_rgb(img, si.TILE_RGB) == 0
    assert not real_errors(tab) and not tab.dialogs


def test_matrix_fetches_heads_in_view_only_when_needed(synthetic, tab):
    page = tab.page
    page.goto(f"{synthetic.url}models/{si.BIG}/")
    page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    assert not [u for u in tab.requests if HEAD_FILE.search(u)]
    page.locator("select[aria-label=colour]").select_option("position")
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    total = si.BIG_LAYERS * si.BIG_HEADS
    fetched = [u for u in tab.requests if HEAD_FILE.search(u)]
    assert 0 < len(fetched) < total / 2
    drawn = page.evaluate("[...document.querySelectorAll('.atlas-matrix-cell')].filter(c => c.dataset.drawn === 'true').length")
    assert drawn == len(fetched)
    # cells waiting for their head keep showing the thumbnail
    last = page.locator(".atlas-matrix-cell").last
    assert last.get_attribute("data-drawn") != "true" and last.locator(".atlas-cell-thumb").get_attribute("hidden") is None

    # every head shows the same points: counts everywhere, points fetched only for the heads in view
    page.fill(".atlas-search", "w5")
    page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{32 * total}'")
    assert page.locator(".atlas-search-count").text_content() == f"{32 * total} points in {total} heads"
    assert set(page.locator(".atlas-cell-hits").all_text_contents()) == {"32"}
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    assert len({u for u in tab.requests if HEAD_FILE.search(u)}) == len(fetched)
    assert not tab.errors and not tab.dialogs


def test_matrix_cell_becomes_interactive_under_the_pointer(synthetic, tab):
    page = tab.page
    page.goto(f"{synthetic.url}models/{si.BIG}/")
    page.wait_for_function("performance.getEntriesByName('atlas:interactive').length === 1")
    cell = page.locator(".atlas-matrix-cell[data-layer='0'][data-head='1']")
    box = cell.locator(".atlas-cell-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("document.querySelector(\".atlas-matrix-cell[data-layer='0'][data-head='1']\").dataset.drawn === 'true'")
    assert [u.rsplit("/", 1)[1] for u in tab.requests if HEAD_FILE.search(u)] == ["L0H1_pca-2d.bin.gz"]
    pos = page.evaluate("document.querySelector('.atlas-view').atlasView.clientPosition(0, 1, 0)")
    page.mouse.move(pos["x"], pos["y"])
    page.locator(".atlas-matrix-tooltip").wait_for(state="visible")
    assert page.locator(".atlas-matrix-tooltip .atlas-tip-token").text_content() == "w0"
    assert not tab.errors


# ------------------------------------------------------------------------------------------------ point stamping

STAMP = """async ([points, w, h, dpr]) => {
  const { rasterize } = await import(new URL('assets/atlas/raster.js', location.origin + '/').href);
  const image = new ImageData(w, h);
  const n = points.length;
  const col = (f) => Float32Array.from(points, f);
  rasterize(image, [250, 250, 250], {
    sx: col((p) => p[0]), sy: col((p) => p[1]), order: Int32Array.from(points, (_, i) => n - 1 - i),
    rgb: Uint8Array.from(points.flatMap((p) => p[2])), alpha: col((p) => p[3]), radius: col((p) => p[4]),
  }, dpr);
  return Array.from(image.data);
}"""


def reference_stamp(points: list, w: int, h: int, dpr: float) -> np.ndarray:
    """What rasterize must draw: for each point in reverse row order, every pixel of its disc (offsets with
    dx² + dy² ≤ r² + 0.25, r = the radius in device pixels rounded to a quarter) blended with its alpha."""
    img = np.empty((h, w, 3), float)
    img[:] = 250
    for point in reversed(points):
        x, y, rgb, a, radius = (float(np.float32(v)) if isinstance(v, float) else v for v in point)  # as JS reads them
        if a <= 0:
            continue
        r = max(0.5, np.floor(radius * dpr * 4 + 0.5) / 4)
        cx, cy = int(np.floor(x * dpr + 0.5)), int(np.floor(y * dpr + 0.5))
        reach = int(np.ceil(r))
        for dy in range(-reach, reach + 1):
            for dx in range(-reach, reach + 1):
                px, py = cx + dx, cy + dy
                if dx * dx + dy * dy <= r * r + 0.25 and 0 <= px < w and 0 <= py < h:
                    img[py, px] = np.floor(np.array(rgb) * a + img[py, px] * (1 - a) + 0.5) if a < 1 else rgb
    return img.astype(np.uint8)


def test_stamping_matches_the_reference_inside_across_edges_and_off_the_image(synthetic, tab):
    rng = np.random.default_rng(4)
    w, h = 60, 40
    points = [[float(x), float(y), [int(c) for c in rng.integers(0, 256, 3)], float(a), float(r)]
              for x, y, a, r in zip(rng.uniform(-8, w / 2 + 8, 400), rng.uniform(-8, h / 2 + 8, 400),
                                    rng.choice([1.0, 1.0, 0.4, 0.15, 0.0], 400), rng.choice([3.0, 1.5, 0.5, 2.3], 400))]
    tab.page.goto(synthetic.url)
    for dpr in (1.0, 2.0):
        drawn = np.array(tab.page.evaluate(STAMP, [points, w, h, dpr]), np.uint8).reshape(h, w, 4)
        assert (drawn[..., 3] == 255).all()
        assert np.array_equal(drawn[..., :3], reference_stamp(points, w, h, dpr))


# ------------------------------------------------------------------------------------------------ a 60k-point head


@pytest.fixture(scope="module")
def large_site(serve, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("large")
    (work / "site").mkdir()
    url = serve(work / "site")
    synthetic_large.build_site(work, url, LARGE_TOKENS)
    return url


def head_url(url: str, layout: str = "") -> str:
    return f"{url}models/{synthetic_large.MODEL}/L0/H0/" + (f"#layout={layout}" if layout else "")


def drag(page, start: tuple[float, float], by: tuple[float, float], steps: int = 8, shift: bool = False) -> None:
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + by[0], start[1] + by[1], steps=steps)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def test_large_head_draws_every_point_and_pans_pixel_for_pixel(large_site, tab):
    page = tab.page
    open_head(page, head_url(large_site))
    canvas = page.locator(".atlas-canvas")
    assert draw_mode(page) == "points"
    assert page.evaluate("document.querySelector('.atlas-view').atlasView.scatter.n") == 2 * LARGE_TOKENS
    before = pixels(canvas)
    assert count_rgb(before, QUERY_RGB) > 5000 and count_rgb(before, KEY_RGB) > 5000
    ids = [0, 1, 2 * 7777, 2 * LARGE_TOKENS - 1]
    where = [client_position(page, i) for i in ids]
    box = canvas.bounding_box()
    dx, dy = 37, -23
    drag(page, (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2), (dx, dy))
    assert np.allclose([client_position(page, i) for i in ids], [(x + dx, y + dy) for x, y in where], atol=1e-3)
    after = pixels(canvas)
    m = 8  # the picture moved by exactly the drag: same pixels away from the edges points enter and leave by
    h, w = before.shape[:2]
    assert np.array_equal(after[m + max(dy, 0):h - m + min(dy, 0), m + max(dx, 0):w - m + min(dx, 0)],
                          before[m - min(dy, 0):h - m - max(dy, 0), m - min(dx, 0):w - m - max(dx, 0)])

    # zoom about the cursor (whole pixels): every point moves away from it by e^0.4 per wheel step of -200
    cursor = np.round(client_position(page, ids[2]))
    old = np.array([client_position(page, i) for i in ids])
    page.mouse.move(*cursor)
    for _ in range(3):
        page.mouse.wheel(0, -200)
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert np.allclose([client_position(page, i) for i in ids], cursor + np.exp(1.2) * (old - cursor), atol=0.01)
    assert draw_mode(page) == "points"
    assert not tab.errors and not tab.dialogs


def test_large_head_3d_pan_reuses_the_depth_order_and_draws_the_same(large_site, tab):
    page = tab.page
    open_head(page, head_url(large_site, "pca-3d"))
    canvas = page.locator(".atlas-canvas")
    box = canvas.bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    drag(page, centre, (40, 15))  # orbit: a new angle, a new depth order
    order = page.evaluate("document.querySelector('.atlas-view').atlasView.scatter.sorted.order.length")
    assert order == 2 * LARGE_TOKENS
    page.evaluate("window.__sorted = document.querySelector('.atlas-view').atlasView.scatter.sorted")
    drag(page, centre, (-30, 20), shift=True)  # pan: same angle
    assert page.evaluate("document.querySelector('.atlas-view').atlasView.scatter.sorted === window.__sorted")
    panned = pixels(canvas)
    page.evaluate("(() => { const s = document.querySelector('.atlas-view').atlasView.scatter; s.sorted = null; "
                  "s.draw(); })()")
    assert page.evaluate("document.querySelector('.atlas-view').atlasView.scatter.sorted !== window.__sorted")
    assert np.array_equal(pixels(canvas), panned)
    # far to near: along the depth order, depth never decreases (quantised to 1/65536 of its range)
    ok = page.evaluate("""(() => { const s = document.querySelector('.atlas-view').atlasView.scatter;
      const o = s.sorted.order, d = s.depth; let lo = Infinity, hi = -Infinity;
      for (const v of d) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      const step = (hi - lo) / 65535;
      for (let j = 1; j < o.length; j++) if (d[o[j]] < d[o[j - 1]] - step) return false;
      return true; })()""")
    assert ok and not tab.errors
