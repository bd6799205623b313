"""Patch layout of vision transformers: token position <-> (row, col) inside one image, and global token index of
images laid out one after another <-> (image_id, row, col). Prefix (CLS/register) tokens have row = col = -1."""

from __future__ import annotations

from typing import Sequence

import numpy as np

def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def patch_grid(image_size: int | Sequence[int], patch_size: int | Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of patches for an image of ``image_size`` (int or (h, w)); edge pixels that do not fill a
    whole patch are dropped, as a stride-``patch_size`` convolution does."""
    (h, w), (ph, pw) = _hw(image_size), _hw(patch_size)
    if ph <= 0 or pw <= 0 or h < ph or w < pw:
        raise ValueError(f"image size {(h, w)} holds no whole {(ph, pw)} patch")
    return h // ph, w // pw


def tokens_per_image(grid: tuple[int, int], num_prefix_tokens: int) -> int:
    return int(num_prefix_tokens) + grid[0] * grid[1]


def position_to_patch(position: int, grid: tuple[int, int], num_prefix_tokens: int) -> tuple[int, int]:
    """(row, col) of the token at ``position`` in one image's sequence; (-1, -1) for a CLS/register token."""
    rows, cols = grid
    if not 0 <= position < tokens_per_image(grid, num_prefix_tokens):
        raise IndexError(f"position {position} outside 0..{tokens_per_image(grid, num_prefix_tokens) - 1}")
    p = position - num_prefix_tokens
    return (-1, -1) if p < 0 else divmod(p, cols)


def patch_to_position(row: int, col: int, grid: tuple[int, int], num_prefix_tokens: int) -> int:
    rows, cols = grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise IndexError(f"patch ({row}, {col}) outside the {rows}x{cols} grid")
    return num_prefix_tokens + row * cols + col


def token_to_patch(index: int, grid: tuple[int, int], num_prefix_tokens: int) -> tuple[int, int, int]:
    """Global token index (images one after another, each ``tokens_per_image`` long) → (image_id, row, col)."""
    if index < 0:
        raise IndexError(f"negative token index {index}")
    image_id, position = divmod(index, tokens_per_image(grid, num_prefix_tokens))
    row, col = position_to_patch(position, grid, num_prefix_tokens)
    return image_id, row, col


def patch_to_token(image_id: int, row: int, col: int, grid: tuple[int, int], num_prefix_tokens: int) -> int:
    if image_id < 0:
        raise IndexError(f"negative image id {image_id}")
    return image_id * tokens_per_image(grid, num_prefix_tokens) + patch_to_position(row, col, grid,
                                                                                      num_prefix_tokens)


def patch_columns(num_images: int, grid: tuple[int, int], num_prefix_tokens: int) -> dict[str, np.ndarray]:
    """Per-token columns for ``num_images`` images laid out one after another (tokens.arrow for images):
    ``image_id`` (uint32), ``position`` (uint16), ``patch_row``/``patch_col`` (int16, -1 for prefix tokens) and
    ``prefix`` (bool: CLS/register token)."""
    T = tokens_per_image(grid, num_prefix_tokens)
    pos = np.tile(np.arange(T, dtype=np.int64), num_images)
    p = pos - num_prefix_tokens
    prefix = p < 0
    row = np.where(prefix, -1, p // grid[1]).astype(np.int16)
    col = np.where(prefix, -1, p % grid[1]).astype(np.int16)
    return {"image_id": np.repeat(np.arange(num_images, dtype=np.uint32), T), "position": pos.astype(np.uint16),
            "patch_row": row, "patch_col": col, "prefix": prefix}
