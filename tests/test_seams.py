"""The seams between stages: the layout and score registries are the single source every consumer reads, point
identity has one definition, and the layout metric reaches the trust measures."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from atlas_build.manifest import ProjectionSpec, parse_manifest
from atlas_build.metrics import head_scores
from atlas_build.metrics.registry import SCORES, for_model, ordered, score_table
from atlas_build.normalize import HeadSample
from atlas_build.normalize.joint import JointSet, is_key, point_ids
from atlas_build.pipeline.heads import HeadTask, run_head
from atlas_build.project import LAYOUTS, ProjectionParams

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_accepts_exactly_the_registered_layouts() -> None:
    doc = {"datasets": [{"name": "d", "source": "inline", "sentences": ["One two."]}],
           "models": [{"name": "m", "source": "random:bert", "tokenizer": "package:x", "dataset": "d"}]}
    for name in LAYOUTS:
        assert parse_manifest({**doc, "projections": {"layouts": [name]}}, "m.toml").projections.layouts == (name,)
    with pytest.raises(Exception, match="expected one of " + re.escape(", ".join(LAYOUTS))):
        parse_manifest({**doc, "projections": {"layouts": ["mds-2d"]}}, "m.toml")


def test_projection_params_take_every_manifest_setting() -> None:
    spec = ProjectionSpec(layouts=("pca-2d",), metric="euclidean", tsne_perplexity=7.0, umap_n_neighbors=9,
                          umap_min_dist=0.3)
    params = ProjectionParams.from_spec(spec, seed=5)
    shared = {f.name for f in dataclasses.fields(ProjectionSpec)} & {f.name for f in dataclasses.fields(params)}
    assert shared == {"metric", "tsne_perplexity", "umap_n_neighbors", "umap_min_dist", "values"}
    assert all(getattr(params, n) == getattr(spec, n) for n in shared) and params.seed == 5


def test_an_unregistered_score_is_an_error_not_dropped() -> None:
    assert list(ordered({"self": 1.0, "first_token": 0.5})) == ["first_token", "self"]
    with pytest.raises(KeyError, match="new_score"):
        ordered({"self": 1.0, "new_score": 2.0})


def test_score_docs_and_manifest_list_come_from_the_registry() -> None:
    doc = (ROOT / "docs" / "reference" / "head-labels.md").read_text()
    rows = [line for line in doc.splitlines() if re.match(r"\| `[a-z_]+` \|", line)]
    assert [r for r in rows if r in score_table()] == score_table(), "docs table = registry rows, in order"
    text = {s["name"] for s in for_model("text")}
    image = {s["name"] for s in for_model("image")}
    assert "same_token" in text - image and "hue_sorting" in image - text and "mean_distance" in text & image
    assert {s.name for s in SCORES} == text | image


def test_scores_come_out_in_registry_order() -> None:
    rng = np.random.default_rng(0)
    n = 12
    sample = HeadSample(rng.normal(size=(n, 4)), rng.normal(size=(n, 4)), np.zeros(n, np.int64), np.arange(n),
                        True, 0.5)
    attn = np.tril(rng.uniform(size=(n, n)))
    scores = head_scores(sample, {0: attn / attn.sum(1, keepdims=True)}, v_norms=np.ones(n))
    names = [s.name for s in SCORES]
    assert list(scores) == sorted(scores, key=names.index)


def test_point_identity_is_defined_once() -> None:
    has_point = np.array([1, 0, 1, 1], bool)
    q, k = point_ids(has_point)
    assert q.tolist() == [0, -1, 1, 2] and k.tolist() == [3, -1, 4, 5]
    joint = JointSet.of(np.eye(3), 2 * np.eye(3), np.flatnonzero(has_point))
    assert joint.m == 3 and np.array_equal(joint.keys, 2 * np.eye(3))
    assert is_key(6).tolist() == [False] * 3 + [True] * 3
    with pytest.raises(ValueError):
        joint.halves(np.zeros(5))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_trust_uses_the_layout_metric(metric: str) -> None:
    from atlas_build.metrics import trust_scores
    from atlas_build.normalize import normalize

    rng = np.random.default_rng(1)
    n, sentences = 60, 6
    # Norms that differ a lot: cosine and Euclidean neighbourhoods disagree.
    q = rng.normal(size=(n, 8)) * rng.uniform(0.1, 10, size=(n, 1))
    k = rng.normal(size=(n, 8)) * rng.uniform(0.1, 10, size=(n, 1))
    sample = HeadSample(q, k, np.repeat(np.arange(sentences), n // sentences), np.tile(np.arange(n // sentences),
                        sentences), False, 8 ** -0.5)
    attn = {s: np.full((n // sentences,) * 2, sentences / n) for s in range(sentences)}
    params = ProjectionParams(metric=metric)
    res = run_head(HeadTask(0, 0, 0, sample, attn, None, np.ones(n), ("pca-2d",), params))
    qn, kn, _ = normalize(sample, metric=metric)
    coords = res.layouts["pca-2d"]
    want = {m: trust_scores(sample, JointSet.of(qn, kn), coords, metric=m)["trustworthiness"]
            for m in ("cosine", "euclidean")}
    assert want["cosine"] != pytest.approx(want["euclidean"], abs=1e-3)
    assert res.trust["pca-2d"]["trustworthiness"] == pytest.approx(want[metric], abs=1e-5)
