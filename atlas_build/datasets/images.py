"""Image datasets: a folder of images, the photos bundled with scikit-image and scikit-learn, and synthetic probes.

`load_images(spec, base_dir)` returns `ImageItem`s in a deterministic order; ``image_id`` is the index in that
list and is what the capture stage records as the sequence ("sentence") id of every patch token.

Selection and order
    * ``spec.images`` non-empty: exactly those names, in the order listed (a probe *family* name such as
      ``"gratings"`` expands to all its probes in catalogue order); then the first ``max_images`` are kept.
    * ``spec.images`` empty: the whole source in catalogue order (folders: sorted relative path); when that is
      more than ``max_images``, a seeded random subset of ``max_images`` is kept, still in catalogue order.

Sources (``spec.source``)
    * a folder (relative to the manifest directory, searched recursively, hidden files skipped): every file
      Pillow can decode. Files that are not images are *skipped* with a `UserWarning` naming each file; when no
      file at all can be read, `InputError` names the folder and the failing files. Names in ``spec.images``
      match a file's relative path or its stem. Licence/attribution come from the manifest.
    * ``skimage``: photos from `skimage.data` with the per-image licence stated in each loader's docstring.
    * ``sklearn``: ``china.jpg`` and ``flower.jpg`` from `sklearn.datasets.load_sample_images` (CC BY 2.0).
    * built-in sources joined with ``+`` (``skimage+probes``): one catalogue, the parts in the order given.
    * ``probes``: the AttentionViz probes, generated in code at ``image_size`` (no resampling) from the seed:
      ``hue-a<deg>`` / ``brightness-a<deg>`` gradients in 8 orientations, ``grating-f<cycles>-a<deg>`` sinusoidal
      gratings over 5 frequencies x 4 angles, ``circles-f<cycles>`` concentric rings. The seed sets grating and
      ring phases and the start hue; brightness ramps are seed-independent by design.
      Each probe draws from its own RNG keyed by (seed, name), so choosing a subset never changes a probe.

Patch layout helpers map a token position inside one image's sequence (``num_prefix_tokens`` CLS/register tokens
first, then patches in row-major order) to ``(row, col)`` and back, and a global token index of images laid out
one after another to ``(image_id, row, col)``. Prefix tokens have ``row = col = -1``.

`ImageItem`, the decoding of image arrays and files, and the preprocessing into model input (`ImagePreprocessor`,
`fit_image`) live in `pixels`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, SourceError
from ..extras import missing
from ..manifest import DatasetSpec
from .paths import resolve_path
from .patches import (patch_columns, patch_grid, patch_to_position, patch_to_token, position_to_patch,  # noqa: F401
                      token_to_patch, tokens_per_image)
from .pixels import ImageItem, read_image_file, to_rgb_uint8
from .probes import (CIRCLE_FREQS, GRATING_ANGLES, GRATING_FREQS, PROBE_ATTRIBUTION, PROBE_FAMILIES,  # noqa: F401
                     PROBE_LICENSE, ProbeParams, hsv_to_rgb, make_probe, probe_catalogue)


IMAGE_SOURCES = ("skimage", "sklearn", "probes")


# --- catalogues ----------------------------------------------------------------------------------------------------

# name -> (skimage.data loader, licence, credit); licence text from each loader's docstring (scikit-image 0.2x).
SKIMAGE_PHOTOS: dict[str, tuple[str, str, str]] = {
    "astronaut": ("astronaut", "Public domain", "Eileen Collins, NASA (via scikit-image skimage.data.astronaut)"),
    "camera": ("camera", "CC0", "Lav Varshney (via scikit-image skimage.data.camera)"),
    "chelsea": ("chelsea", "CC0", "Stefan van der Walt (via scikit-image skimage.data.chelsea)"),
    "coffee": ("coffee", "CC0", "Rachel Michetti, courtesy of Pikolo Espresso Bar "
                                "(via scikit-image skimage.data.coffee)"),
    "horse": ("horse", "CC0", "Andreas Preuss (marauder), openclipart (via scikit-image skimage.data.horse)"),
    "rocket": ("rocket", "Public domain", "SpaceX, launch of DSCOVR on Falcon 9 "
                                          "(via scikit-image skimage.data.rocket)"),
    "hubble_deep_field": ("hubble_deep_field", "Public domain", "NASA, Hubble eXtreme Deep Field "
                                                               "(via scikit-image skimage.data.hubble_deep_field)"),
    "retina": ("retina", "CC0 1.0", "Mikael Häggström, fundus photograph, Wikimedia Commons "
                                    "(via scikit-image skimage.data.retina)"),
    "immunohistochemistry": ("immunohistochemistry", "No known copyright restrictions",
                             "Immunohistochemical staining of colon tissue "
                             "(via scikit-image skimage.data.immunohistochemistry)"),
    "coins": ("coins", "No known copyright restrictions", "Greek coins from Pompeii, Brooklyn Museum "
                                                           "(via scikit-image skimage.data.coins)"),
    "clock": ("clock", "Public domain", "Stefan van der Walt (via scikit-image skimage.data.clock)"),
    "text": ("text", "Public domain", "Wikimedia Commons File:Corner.png (via scikit-image skimage.data.text)"),
    "cell": ("cell", "CC0", "Cell, Allen Institute / scikit-image (via scikit-image skimage.data.cell)"),
    "grass": ("grass", "CC0", "linolafett, DeviantArt (via scikit-image skimage.data.grass)"),
    "gravel": ("gravel", "CC0", "CC0Textures Gravel04 (via scikit-image skimage.data.gravel)"),
    "brick": ("brick", "CC0", "CC0Textures Bricks25 (via scikit-image skimage.data.brick)"),
}
SKIMAGE_ALIASES = {"cat": "chelsea"}

SKLEARN_PHOTOS: dict[str, tuple[str, str]] = {
    "china": ("CC BY 2.0", "danielbuechele, https://www.flickr.com/photos/danielbuechele/6061409035 "
                           "(retrieved by Robert Layton; via scikit-learn load_sample_images)"),
    "flower": ("CC BY 2.0", "vultilion, https://www.flickr.com/photos/vultilion/6056698931 "
                            "(retrieved by Robert Layton; via scikit-learn load_sample_images)"),
}

# --- loaders -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A catalogue entry: loaded lazily so unselected photos are never decoded."""

    name: str
    load: Callable[[], np.ndarray]
    license: str
    attribution: str


def _check_header(path: Path) -> None:
    """Raise unless Pillow recognises the file as an image (reads the header only)."""
    from PIL import Image
    with Image.open(path) as img:
        if img.width <= 0 or img.height <= 0:
            raise ValueError("empty image")


def _skimage_entries() -> list[_Entry]:
    try:
        import skimage.data as skdata
    except ImportError:
        raise SourceError("skimage", missing("images", "the skimage image source (scikit-image)")) from None

    def loader(fn: str) -> Callable[[], np.ndarray]:
        return lambda: to_rgb_uint8(getattr(skdata, fn)())

    return [_Entry(name, loader(fn), lic, credit) for name, (fn, lic, credit) in SKIMAGE_PHOTOS.items()]


def _sklearn_entries() -> list[_Entry]:
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise SourceError("sklearn", "scikit-learn is not installed") from None
    cache: dict[str, np.ndarray] = {}

    def loader(name: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            if not cache:
                bunch = load_sample_images()
                for fname, img in zip(bunch.filenames, bunch.images):
                    cache[Path(fname).stem] = to_rgb_uint8(img)
            return cache[name]
        return load

    return [_Entry(name, loader(name), lic, credit) for name, (lic, credit) in SKLEARN_PHOTOS.items()]


def _probe_entries(spec: DatasetSpec) -> list[_Entry]:
    def loader(p: ProbeParams) -> Callable[[], np.ndarray]:
        return lambda: make_probe(p, spec.image_size, spec.seed)

    return [_Entry(p.name, loader(p), PROBE_LICENSE, PROBE_ATTRIBUTION) for p in probe_catalogue()]


def _folder_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                  key=lambda p: p.relative_to(root).as_posix())


def _folder_entries(spec: DatasetSpec, base_dir: Path) -> tuple[Path, list[_Entry]]:
    root = resolve_path(spec.source, base_dir)
    if not root.exists():
        raise SourceError(spec.source, f"no such folder: {root}")
    if not root.is_dir():
        raise SourceError(spec.source, f"{root} is not a folder (an image dataset's source is a folder, "
                                       f"{', '.join(IMAGE_SOURCES)})")

    def loader(p: Path) -> Callable[[], np.ndarray]:
        return lambda: read_image_file(p)

    entries = [_Entry(p.relative_to(root).as_posix(), loader(p), spec.license, spec.attribution)
               for p in _folder_files(root)]
    return root, entries


def _select(spec: DatasetSpec, entries: list[_Entry], *, families: dict[str, list[str]] | None = None,
            aliases: dict[str, str] | None = None, match_stem: bool = False) -> list[_Entry]:
    by_name = {e.name: e for e in entries}
    if not spec.images:
        if len(entries) <= spec.max_images:
            return entries
        rng = np.random.default_rng(spec.seed)
        keep = np.sort(rng.choice(len(entries), size=spec.max_images, replace=False))
        return [entries[int(i)] for i in keep]
    stems: dict[str, list[_Entry]] = {}
    if match_stem:
        for e in entries:
            stems.setdefault(Path(e.name).stem, []).append(e)
    out: list[_Entry] = []
    seen: set[str] = set()
    for i, want in enumerate(spec.images):
        names: list[str]
        if families and want in families:
            names = families[want]
        elif aliases and want in aliases:
            names = [aliases[want]]
        elif want in by_name:
            names = [want]
        elif match_stem and want in stems:
            if len(stems[want]) > 1:
                raise InputError(f"dataset {spec.name!r}: images[{i}] = {want!r} matches several files: "
                                 f"{', '.join(e.name for e in stems[want][:5])}; give the relative path")
            names = [stems[want][0].name]
        else:
            choices = [*(families or {}), *by_name] if not match_stem else []
            hint = f" (expected one of: {', '.join(choices)})" if choices else " (no such file in the folder)"
            raise InputError(f"dataset {spec.name!r}: images[{i}]: unknown image {want!r} in source "
                             f"{spec.source!r}{hint}")
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append(by_name[n])
    return out[:spec.max_images]


def load_images(spec: DatasetSpec, base_dir: Path) -> list[ImageItem]:
    """The dataset's images, selected and ordered as described in the module docstring."""
    base_dir = Path(base_dir)
    folder: Path | None = None
    parts = spec.source.split("+")
    if all(p in IMAGE_SOURCES for p in parts):
        if len(set(parts)) != len(parts):
            raise InputError(f"dataset {spec.name!r}: source {spec.source!r} names a source twice")
        entries: list[_Entry] = []
        families: dict[str, list[str]] = {}
        aliases: dict[str, str] = {}
        for part in parts:  # built-in catalogues joined with '+', in the order given (names are distinct)
            if part == "skimage":
                entries += _skimage_entries()
                aliases.update(SKIMAGE_ALIASES)
            elif part == "sklearn":
                entries += _sklearn_entries()
            else:
                entries += _probe_entries(spec)
                for p in probe_catalogue():
                    families.setdefault(p.family, []).append(p.name)
        chosen = _select(spec, entries, families=families, aliases=aliases)
    else:
        folder, entries = _folder_entries(spec, base_dir)
        if not entries:
            raise InputError(f"dataset {spec.name!r}: folder {folder} holds no files")
        # Non-images are dropped before sampling (a cheap header check), so max_images counts images only.
        readable: list[_Entry] = []
        failures: list[str] = []
        for e in entries:
            try:
                _check_header(folder / e.name)
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for non-images
                failures.append(f"{e.name} ({type(exc).__name__}: {str(exc)[:120]})")
            else:
                readable.append(e)
        if not readable:
            raise InputError(f"dataset {spec.name!r}: no readable image in {folder}: "
                             + "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
        for f in failures:
            warnings.warn(f"dataset {spec.name!r}: skipping {f}: not a readable image", stacklevel=2)
        chosen = _select(spec, readable, match_stem=True)
    items: list[ImageItem] = []
    for e in chosen:
        try:
            pixels = e.load()
        except Exception as exc:  # noqa: BLE001
            if folder is None:
                raise SourceError(spec.source, f"cannot load image {e.name!r}: {type(exc).__name__}: {exc}") \
                    from None
            warnings.warn(f"dataset {spec.name!r}: skipping {e.name}: cannot decode it "
                          f"({type(exc).__name__}: {str(exc)[:120]})", stacklevel=2)
            continue
        pixels.setflags(write=False)
        items.append(ImageItem(len(items), e.name, pixels, e.license or spec.license,
                               e.attribution or spec.attribution))
    if not items:
        raise InputError(f"dataset {spec.name!r}: no images selected from {spec.source!r}")
    return items


def dataset_license(items: Sequence[ImageItem]) -> tuple[str, str]:
    """(licence, attribution) summaries for a dataset's manifest entry: distinct values in order, '; '-joined."""
    lic = list(dict.fromkeys(i.license for i in items if i.license))
    att = list(dict.fromkeys(i.attribution for i in items if i.attribution))
    return "; ".join(lic), "; ".join(att)
