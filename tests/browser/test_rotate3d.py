"""3D rotation on the synthetic site: in the matrix view one drag turns every 3D head by the same angle (the
AttentionViz global view), without following the cell's link; hover answers the right point after turning, in the
matrix view and in the head view."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_site as ss
from helpers import KEY_RGB, QUERY_RGB, client_position, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser

VIEW = "document.querySelector('.atlas-view').atlasView"
PAD = 4  # matrix cells' padding (CSS px), as matrix-canvas.js


def orbit(xyz: np.ndarray, w: int, h: int, yaw: float, pitch: float) -> np.ndarray:
    """Expected cell positions [n, 2] of 3D points: the head view's rotation, fit by the bounding box's diagonal."""
    lo, hi = xyz.min(0), xyz.max(0)
    x, y, z = (xyz - (lo + hi) / 2).T
    k = (min(w, h) - 2 * PAD) / np.linalg.norm(hi - lo)
    rx, rz = np.cos(yaw) * x + np.sin(yaw) * z, -np.sin(yaw) * x + np.cos(yaw) * z
    return np.c_[w / 2 + rx * k, h / 2 - (np.cos(pitch) * y - np.sin(pitch) * rz) * k]


def open_3d_matrix(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true' && "
                           "[...document.querySelectorAll('.atlas-matrix-cell')].every(c => c.dataset.drawn === 'true')")


def cell_positions(page, layer: int, head: int, point_ids: list[int]) -> tuple[np.ndarray, int, int]:
    """Drawn positions of the points relative to the cell's plot box, and the box's width and height."""
    box = page.locator(f".atlas-matrix-cell[data-layer='{layer}'][data-head='{head}'] .atlas-cell-plot").bounding_box()
    pos = page.evaluate(f"ids => ids.map(id => {VIEW}.clientPosition({layer}, {head}, id))", point_ids)
    return np.array([[p["x"] - box["x"], p["y"] - box["y"]] for p in pos]), round(box["width"]), round(box["height"])


def isolated(screen: np.ndarray, gap: float) -> int:
    """Index of a point whose nearest other point is at least `gap` pixels away."""
    d = np.linalg.norm(screen[:, None] - screen[None], axis=-1) + np.eye(len(screen)) * 1e9
    return int(np.argmax(d.min(1) >= gap))


def test_matrix_drag_turns_every_3d_head_by_one_angle(synthetic, tab):
    page = tab.page
    url = f"{synthetic.url}models/{ss.MODEL}/#layout=pca-3d"
    open_3d_matrix(page, url)
    assert page.locator(".atlas-toolbar .atlas-hint").is_visible()
    pts = synthetic.synth.points
    ids = [p.point_id for p in pts]
    heads = [(layer, head) for layer in range(ss.LAYERS) for head in range(ss.HEADS)]
    plots = page.locator(".atlas-cell-plot")
    before = [pixels(plots.nth(i)) for i in range(len(heads))]
    angle0 = page.evaluate(f"{VIEW}.canvas.angle()")
    for layer, head in heads:
        screen, w, h = cell_positions(page, layer, head, ids)
        xyz = np.array([ss.coords(p, layer, head, "pca-3d") for p in pts])
        np.testing.assert_allclose(screen, orbit(xyz, w, h, angle0["yaw"], angle0["pitch"]), atol=0.01)

    box = page.locator(".atlas-matrix-cell[data-layer='1'][data-head='0'] .atlas-cell-plot").bounding_box()
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 60, y0 + 25, steps=6)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert page.url == url, "a drag does not open the head"
    angle = page.evaluate(f"{VIEW}.canvas.angle()")
    assert angle["yaw"] == pytest.approx(angle0["yaw"] + 0.6, abs=1e-9)
    assert angle["pitch"] == pytest.approx(angle0["pitch"] + 0.25, abs=1e-9)
    page.mouse.move(2, 2)
    page.locator(".atlas-matrix-tooltip").wait_for(state="hidden")
    page.wait_for_timeout(50)
    # every head is drawn anew, at the one shared angle: exactly where its coordinates put each point
    for i, (layer, head) in enumerate(heads):
        after = pixels(plots.nth(i))
        assert (after != before[i]).any(), (layer, head)
        assert count_rgb(after, QUERY_RGB) > 0 and count_rgb(after, KEY_RGB) > 0
        screen, w, h = cell_positions(page, layer, head, ids)
        xyz = np.array([ss.coords(p, layer, head, "pca-3d") for p in pts])
        np.testing.assert_allclose(screen, orbit(xyz, w, h, angle["yaw"], angle["pitch"]), atol=0.01)
        for p, (x, y) in zip(pts, screen):  # the point's own colour is under its position (a near point may cover it)
            near = after[max(0, round(y) - 1):round(y) + 2, max(0, round(x) - 1):round(x) + 2].reshape(-1, 3)
            assert any(tuple(c) in (QUERY_RGB, KEY_RGB) for c in near)
    # the same synthetic heads differ only by a shift: at one angle all four cells show the same picture
    first = pixels(plots.nth(0))
    for i in range(1, len(heads)):
        assert np.array_equal(pixels(plots.nth(i)), first)

    # hover answers the point now under the pointer, not the one that was there before the turn
    screen, *_ = cell_positions(page, 1, 0, ids)
    target = pts[isolated(screen, 7.0)]
    pos = page.evaluate(f"{VIEW}.clientPosition(1, 0, {target.point_id})")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.locator(".atlas-matrix-tooltip")
    tip.wait_for(state="visible")
    assert page.locator(".atlas-matrix-stage").get_attribute("data-hover-point") == str(target.point_id)
    assert tip.locator(".atlas-tip-token").text_content() == target.text
    assert tip.locator(".atlas-tip-kind").text_content() == ("key" if target.is_key else "query")
    # a plain click still opens the head
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_url(f"**/L1/H0/**")
    assert f"point={target.point_id}" in page.url
    assert not tab.errors and not tab.dialogs


def test_matrix_2d_drag_does_not_turn(synthetic, tab):
    page = tab.page
    open_3d_matrix(page, f"{synthetic.url}models/{ss.MODEL}/#layout=pca-2d&colour=position")
    assert page.locator(".atlas-toolbar .atlas-hint").is_hidden()
    angle0 = page.evaluate(f"{VIEW}.canvas.angle()")
    box = page.locator(".atlas-cell-plot").first.bounding_box()
    ids = [p.point_id for p in synthetic.synth.points]
    before, *_ = cell_positions(page, 0, 0, ids)
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 70, box["y"] + 40, steps=4)
    page.mouse.up()
    page.mouse.move(2, 2)
    page.wait_for_timeout(100)
    assert page.evaluate(f"{VIEW}.canvas.angle()") == angle0
    assert np.array_equal(cell_positions(page, 0, 0, ids)[0], before)


def test_head_view_orbit_then_hover(synthetic, tab):
    page = tab.page
    open_head(page, f"{synthetic.url}models/{ss.MODEL}/L0/H1/#layout=pca-3d")
    pts = synthetic.synth.points
    before = np.array([client_position(page, p.point_id) for p in pts])
    box = page.locator(".atlas-canvas").bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 100, steps=6)
    page.mouse.up()
    after = np.array([client_position(page, p.point_id) for p in pts])
    # a rotation, not a pan: points move by different amounts, and distances between them change
    moves = np.linalg.norm(after - before, axis=1)
    assert moves.max() > 5 and np.ptp(moves) > 1
    # the drawn picture is the rotation of the coordinates: an orthographic view is affine in them
    xyz = np.array([ss.coords(p, 0, 1, "pca-3d") for p in pts])
    design = np.c_[xyz, np.ones(len(pts))]
    for axis in (0, 1):
        coef, *_ = np.linalg.lstsq(design, after[:, axis], rcond=None)
        assert np.abs(design @ coef - after[:, axis]).max() < 0.01
    target = pts[isolated(after, 9.0)]
    page.mouse.move(*client_position(page, target.point_id))
    tip = page.locator(".atlas-tooltip")
    tip.wait_for(state="visible")
    assert tip.locator(".atlas-tip-token").text_content() == target.text
    assert tip.locator(".atlas-tip-kind").text_content() == ("key" if target.is_key else "query")
    assert tip.locator(".atlas-tip-pos").text_content().startswith(f"position {target.position + 1} of ")
    assert not tab.errors
