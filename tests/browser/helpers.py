"""Shared steps of the browser tests: open a view and wait for it, read canvas pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from atlas_build.export.colours import KEY, QUERY, hex_rgb

QUERY_RGB = hex_rgb(QUERY)
KEY_RGB = hex_rgb(KEY)
VIEW = ".atlas-view"


def open_head(page, url: str) -> None:
    page.goto(url)
    wait_head(page)


def wait_head(page, layer: int | None = None, head: int | None = None) -> None:
    cond = "v && v.dataset.state === 'ready'"
    if layer is not None:
        cond += f" && v.dataset.layer === '{layer}' && v.dataset.head === '{head}'"
    page.wait_for_function(f"(() => {{ const v = document.querySelector('{VIEW}'); return {cond}; }})()")


def pixels(locator) -> np.ndarray:
    """RGB array of an element as rendered (a real screenshot, not the canvas's own buffer)."""
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))


def count_rgb(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(img == np.array(rgb, np.uint8), axis=-1).sum())


def client_position(page, point_id: int) -> tuple[float, float]:
    pos = page.evaluate(f"document.querySelector('{VIEW}').atlasView.clientPosition({point_id})")
    return pos["x"], pos["y"]


def hover_matrix_point(page, layer: int, head: int, point_id: int):
    """Move the mouse onto a point in the matrix view's cell of (layer, head); returns the visible tooltip."""
    pos = page.evaluate(f"document.querySelector('.atlas-view').atlasView.clientPosition({layer}, {head}, "
                        f"{point_id})")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.locator(".atlas-matrix-tooltip")
    tip.wait_for(state="visible")
    return tip
