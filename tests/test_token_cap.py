"""The Zipf cap (`max_token_repeats`) end to end on the tiny build: which tokens get points, and what is reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlas_build.export import read_head, read_manifest, read_points, read_table
from atlas_build.pipeline import build

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT / "data_manifests" / "tiny.toml").read_text()


def _manifest(d: Path, cap: int) -> Path:
    path = d / "tiny.toml"
    path.write_text(TINY.replace('license = "CC0-1.0"', f'max_token_repeats = {cap}\nlicense = "CC0-1.0"', 1))
    return path


@pytest.mark.slow  # a whole build or more in fresh processes (25-60 s): `make test-slow`, run by CI
def test_capped_tokens_keep_their_place_in_sentences_but_lose_their_points(tmp_path: Path) -> None:
    logs: list[str] = []
    report = build(_manifest(tmp_path, 1), tmp_path / "out", log=logs.append)
    data = report.site_dir / "data" / "tiny-bert"
    manifest = read_manifest(data / "manifest.json")
    tokens = read_table(data / "tokens.arrow")
    text = tokens.column("text").to_pylist()
    has_q = tokens.column("query_point").is_valid().to_numpy(zero_copy_only=False)
    has_k = tokens.column("key_point").is_valid().to_numpy(zero_copy_only=False)
    assert np.array_equal(has_q, has_k)
    piece = tokens.column("piece").to_pylist()  # the cap counts vocabulary ids: " the" and "The" are one piece
    order = np.lexsort((tokens.column("position").to_numpy(), tokens.column("sentence_id").to_numpy()))
    seen: set[str] = set()
    for row in order:  # tokens are sampled sentence by sentence, in order: the first occurrence keeps its points
        assert has_q[row] == (piece[row] not in seen), piece[row]
        seen.add(piece[row])
    assert text.count("[CLS]") == 6 and sum(has_q[i] for i, t in enumerate(text) if t == "[CLS]") == 1
    kept = int(has_q.sum())
    assert manifest["dataset"]["num_tokens_with_points"] == kept < len(text)
    assert manifest["points"]["count"] == 2 * kept
    points = read_points(data, manifest)
    assert np.array_equal(points.point_id, np.arange(2 * kept))
    head = read_head(data, 1, 0, manifest)
    assert all(c.shape == (2 * kept, 2) for c in head.layouts.values())

    logs.clear()
    build(_manifest(tmp_path, 2), tmp_path / "out", log=logs.append)
    assert any("capture: reused" in line for line in logs), "the cap does not change what the model computes"
    assert not any("heads:" in line and "reused" in line for line in logs), "points changed: heads recomputed"
    again = read_manifest(report.site_dir / "data" / "tiny-bert" / "manifest.json")
    assert again["dataset"]["num_tokens_with_points"] > kept
