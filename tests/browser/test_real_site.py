"""The views on the site the real pipeline builds for data_manifests/tiny.toml."""

from __future__ import annotations

import gzip
import json
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from helpers import KEY_RGB, QUERY_RGB, count_rgb, open_head, pixels

pytestmark = pytest.mark.browser


def first_model(root):
    manifest_path = sorted((root / "data").glob("*/manifest.json"))[0]
    return manifest_path.parent.name, json.loads(manifest_path.read_text("utf-8"))


def read(data_dir, name: str) -> list[dict]:
    with pa.memory_map(str(data_dir / name)) as src:
        return pa.ipc.open_file(src).read_all().to_pylist()


def expected_hits(data_dir, word: str) -> int:
    """Points whose token, stripped of subword markers, equals `word` (every head shows the same points)."""
    norm = lambda s: s.lstrip("#Ġ▁").strip().lower()  # noqa: E731
    return sum((t["query_point"] is not None) + (t["key_point"] is not None)
               for t in read(data_dir, "tokens.arrow") if norm(t["text"]) == word)


def test_real_head_page_draws_both_colours_and_searches(tiny_site, tab):
    url, root = tiny_site
    model, manifest = first_model(root)
    last = manifest["heads"][-1]
    open_head(tab.page, f"{url}models/{model}/L{last['layer']}/H{last['head']}/")
    img = pixels(tab.page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    want = expected_hits(root / "data" / model, "the")
    assert want > 0
    tab.page.fill(".atlas-search", "the")
    tab.page.wait_for_function(f"document.querySelector('.atlas-search-count').dataset.count === '{want}'")
    assert tab.page.locator(".atlas-side-title").text_content() == f"Layer {last['layer']} · Head {last['head']}"
    assert tab.page.locator(".atlas-head-label").text_content() == last["label"]
    assert not tab.errors and not tab.dialogs
    assert tab.page.locator("img[src='x']").count() == 0


def test_real_matrix_page_has_one_cell_per_head(tiny_site, tab):
    url, root = tiny_site
    model, manifest = first_model(root)
    tab.page.goto(f"{url}models/{model}/")
    tab.page.wait_for_function("document.querySelector('.atlas-view').dataset.loaded === 'true'")
    cells = tab.page.locator(".atlas-matrix-cell")
    assert cells.count() == len(manifest["heads"])
    cells.nth(1).click()
    h = manifest["heads"][1]
    tab.page.wait_for_function(f"(() => {{ const v = document.querySelector('.atlas-view'); return v && "
                               f"v.dataset.view === 'head' && v.dataset.state === 'ready' && "
                               f"v.dataset.head === '{h['head']}'; }})()")
    img = pixels(tab.page.locator(".atlas-canvas"))
    assert count_rgb(img, QUERY_RGB) > 0 and count_rgb(img, KEY_RGB) > 0
    assert not tab.errors and not tab.dialogs


KB = 1024
BUDGET_POINTS, BUDGET = 10_000, 300 * KB


def served_bytes(file) -> int:
    """What GitHub Pages sends: html/js/css/json gzip-compressed, Arrow, binary and PNG as they are."""
    data = file.read_bytes()
    return len(gzip.compress(data, 6, mtime=0)) if file.suffix in (".html", ".js", ".css", ".json") else len(data)


def scaled_arrow_bytes(file, scale: float) -> float:
    """An Arrow file's size at ``scale`` times its rows: row buffers grow linearly, dictionaries of token strings as
    a vocabulary does (Heaps' law, about the square root of the text's length), schema and footer not at all."""
    with pa.ipc.open_file(file) as reader:
        table = reader.read_all()
    dictionaries = sum(c.chunk(0).dictionary.nbytes for c in table.columns
                       if c.num_chunks and pa.types.is_dictionary(c.type))
    rows = table.nbytes - dictionaries
    return file.stat().st_size - table.nbytes + rows * scale + dictionaries * scale ** 0.5


def test_real_head_page_fetches_little_data(tiny_site, tab):
    """Opening a head page reads the manifest, the head's file, the tokens and one layout, nothing else; scaled
    to 10k points (per-point files by points, JSON as it is) that stays within 300 KB."""
    url, root = tiny_site
    model, manifest = first_model(root)
    h = manifest["heads"][1]
    fetched = []
    tab.page.on("requestfinished", lambda r: fetched.append(urlsplit(r.url).path))
    open_head(tab.page, f"{url}models/{model}/L{h['layer']}/H{h['head']}/")
    tab.page.wait_for_timeout(300)
    data = sorted(p.split(f"/data/{model}/", 1)[1] for p in fetched if f"/data/{model}/" in p)
    layout = next(name for name in manifest["layouts"] if name.endswith("-2d"))
    stem = f"L{h['layer']}H{h['head']}"
    assert data == sorted([f"coords/{stem}_{layout}.bin.gz", f"heads/{stem}.json", "manifest.json", "tokens.arrow",
                           f"thumbs/{stem}_{layout}.png"])
    files = [root / "data" / model / f for f in data if not f.startswith("thumbs/")]
    scale = BUDGET_POINTS / manifest["points"]["count"]
    scaled = sum(scaled_arrow_bytes(f, scale) if f.suffix == ".arrow" else f.stat().st_size * scale
                 if f.name.endswith(".bin.gz") else served_bytes(f) for f in files)
    assert scaled <= BUDGET, {f.name: f.stat().st_size for f in files}
    total = sum(served_bytes(root / p.lstrip("/")) for p in set(fetched) if (root / p.lstrip("/")).is_file())
    assert total <= BUDGET, "the whole page as served, tiny data"
