"""The tiny manifest builds a whole site end to end, and the exported files read back with the right numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atlas_build import SCHEMA_VERSION
from atlas_build.errors import SchemaVersionError
from atlas_build.export import (coords_header, head_path, read_head, read_head_attention, read_head_detail, read_manifest, read_points,
                                read_table)

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def data(tiny_build: Path) -> Path:
    return tiny_build / "site" / "data" / "tiny-bert"


def test_site_has_expected_pages_and_files(tiny_build: Path, data: Path) -> None:
    site = tiny_build / "site"
    manifest = read_manifest(data / "manifest.json")
    model = manifest["model"]
    assert (model["num_layers"], model["num_heads"], model["head_dim"]) == (2, 4, 8)
    assert len(manifest["heads"]) == 8
    for h in manifest["heads"]:
        layer, head = h["layer"], h["head"]
        for kind in ("head", "norms", "aggregate"):
            assert (data / head_path(kind, layer, head)).is_file(), kind
        for layout in ("pca-2d", "tsne-2d"):
            assert (data / head_path("coords", layer, head, layout)).is_file()
        # a thumbnail file of the default layout (the page's preview image); every 2D layout's is in its layer's strip
        assert manifest["default_layout"] == "pca-2d"
        assert (data / head_path("thumb", layer, head, "pca-2d")).read_bytes()[:4] == b"\x89PNG"
        assert not (data / head_path("thumb", layer, head, "tsne-2d")).exists()
        assert manifest["thumbnails"]["layouts"] == ["pca-2d", "tsne-2d"]
        assert (site / "models" / "tiny-bert" / f"L{layer}" / f"H{head}" / "index.html").is_file()
    assert (site / "index.html").is_file() and (site / "models" / "tiny-bert" / "index.html").is_file()
    assert not list(tiny_build.glob("site.*")) and not (tiny_build / ".staging").exists()


def test_tokens_points_and_coordinates_join_by_explicit_ids(data: Path) -> None:
    manifest = read_manifest(data / "manifest.json")
    tokens = read_table(data / "tokens.arrow")
    n = tokens.num_rows
    assert manifest["tokens"]["count"] == n and manifest["points"]["count"] == 2 * n
    text = tokens.column("text").to_pylist()
    assert text[0] == "[CLS]" and tokens.column("special").to_pylist()[0] is True
    assert {" <", ">", "alert", "="} <= set(text), "markup in the data is tokenised and stored verbatim"
    assert {"<", ">", "alert", "="} <= set(tokens.column("piece").to_pylist())
    tok_id = tokens.column("token_id").to_numpy()
    assert np.array_equal(np.sort(tok_id), np.arange(n))
    points = read_points(data, manifest)
    assert np.array_equal(points.point_id, np.arange(2 * n)) and points.is_key.sum() == n
    assert np.array_equal(np.sort(points.token_id[points.is_key == 0]), np.sort(tok_id))
    head = read_head(data, 0, 0, manifest)
    assert np.array_equal(head.point_id, points.point_id) and head.norm.shape == (2 * n,)
    for layout, coords in head.layouts.items():
        assert coords.shape == (2 * n, 2)
        header = coords_header(data / head_path("coords", 0, 0, layout))
        assert header == {"layer": 0, "head": 0, "layout": layout, "points": 2 * n, "dims": 2, "bits": 16}
        cache = next(data.parents[2].glob(f"cache/tiny-bert/heads-*/L0H0/layout_{layout}.npy"))
        exact = np.load(cache)
        assert np.abs(coords - exact).max() <= np.ptp(exact, axis=0).max() / 65535 / 2 + 1e-6


def test_attention_rows_are_probabilities_per_sentence(data: Path) -> None:
    tokens = read_table(data / "tokens.arrow")
    lengths: dict[int, int] = {}
    for sid in tokens.column("sentence_id").to_pylist():
        lengths[sid] = lengths.get(sid, 0) + 1
    blocks = read_head_attention(data, 1, 2)
    assert set(blocks) == set(lengths)
    for sid, (first, w) in blocks.items():
        assert w.shape == (lengths[sid], lengths[sid])
        assert np.allclose(w.sum(axis=1), 1.0, atol=w.shape[0] / 255 / 2 + 1e-6)


def test_schema_version_mismatch_is_refused(data: Path, tmp_path: Path) -> None:
    doc = json.loads((data / "manifest.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    doc["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        read_manifest(tmp_path / "manifest.json")


def test_head_pages_stay_out_of_nav_and_escape_tokens(tiny_build: Path) -> None:
    site = tiny_build / "site"
    home = (site / "index.html").read_text()
    assert "models/tiny-bert/" in home and "/L0/H0/" not in home
    search = json.loads((site / "search" / "search_index.json").read_text())
    locations = {d["location"] for d in search["docs"]}
    assert "models/tiny-bert/L0/H1/" in locations, "head pages are searchable although not in the nav"
    for page in site.rglob("*.html"):
        assert HOSTILE not in page.read_text(), f"unescaped hostile token in {page}"


def test_findings_page_numbers_equal_the_manifest(tiny_build: Path, data: Path) -> None:
    from statistics import fmean

    manifest = read_manifest(data / "manifest.json")
    page = (tiny_build / "site" / "findings" / "index.html").read_text()
    heads = [read_head_detail(data, h["layer"], h["head"], manifest) for h in manifest["heads"]]
    spearman = fmean(h["norm"]["spearman_cosine_dot"] for h in heads)
    assert f"<td>{spearman:.3f}</td>" in page
    for layer in (0, 1):
        first = fmean(h["metrics"]["first_token"] for h in heads if h["layer"] == layer)
        gap = fmean(h["norm"]["mean_q_norm"] - h["norm"]["mean_k_norm"] for h in heads if h["layer"] == layer)
        assert f"<td>{layer}</td>\n<td>{gap:.2f}</td>\n<td>{first:.3f}</td>" in page
    for label in {h["label"] for h in heads}:
        count = sum(h["label"] == label for h in heads)
        assert f"<strong>{label}</strong> ({count} heads)" in page
    for h in heads:
        assert f'href="../models/tiny-bert/L{h["layer"]}/H{h["head"]}/"' in page


def test_head_pages_and_findings_show_the_per_query_measures(tiny_build: Path, data: Path) -> None:
    from statistics import fmean

    from atlas_build.site.pages import HIGHDIM_ROWS, measure_text

    manifest = read_manifest(data / "manifest.json")
    heads = [read_head_detail(data, h["layer"], h["head"], manifest) for h in manifest["heads"]]
    names = ("query_rank_corr", "nearest_key_share")
    for h in heads:
        page = (tiny_build / "site" / "models" / "tiny-bert" / f"L{h['layer']}" / f"H{h['head']}" / "index.html")
        text = page.read_text()
        assert "Faithfulness per query" in text and all(f"<code>{n}</code>" in text for n in names)
        rows = [(f"layout {lay}", h["trust"][lay]) for lay in manifest["layouts"]]
        rows += [(label, h["highdim"][space]) for space, label in HIGHDIM_ROWS.items()]
        for label, vals in rows:
            cells = "".join(f"\n<td>{measure_text(vals.get(n))}</td>" for n in names)
            assert f"<td>{label}</td>{cells}" in text
        assert h["highdim"]["padded"]["query_rank_corr"] > 0.99  # exact up to float16 capture rounding and ties
    findings = (tiny_build / "site" / "findings" / "index.html").read_text()
    for lay in manifest["layouts"]:
        corr = fmean(h["trust"][lay]["query_rank_corr"] for h in heads)
        share = fmean(h["trust"][lay]["nearest_key_share"] for h in heads)
        assert f"<td>{corr:.3f}</td>\n<td>{share:.3f}</td>" in findings


def test_library_bars_are_silenced_only_while_loading(capsys) -> None:
    """Without --progress, a library's own tqdm bar (e.g. the GGUF reader's) prints nothing while models load."""
    from tqdm.auto import tqdm

    from atlas_build.pipeline import _library_bars

    with _library_bars(progress=False):
        for _ in tqdm(range(3), desc="library bar"):
            pass
        for _ in tqdm(range(3), desc="chosen bar", disable=False):
            pass
    err = capsys.readouterr().err
    assert "library bar" not in err and "chosen bar" in err
    for _ in tqdm(range(3), desc="after"):
        pass
    assert "after" in capsys.readouterr().err
