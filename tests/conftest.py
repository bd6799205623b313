"""Shared fixtures: one tiny end-to-end build per test session, reused by integration and browser tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build data_manifests/tiny.toml once; returns the build directory (site in ./site, cache in ./cache)."""
    from atlas_build.pipeline import build

    out = tmp_path_factory.mktemp("tiny-build")
    build(ROOT / "data_manifests" / "tiny.toml", out, jobs=1, log=lambda msg: None)
    return out


@pytest.fixture(scope="session")
def pca_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data_manifests/tiny.toml with PCA in 2D and 3D (pca-2d nested in pca-3d's files), built once per session."""
    from atlas_build.pipeline import build

    out = tmp_path_factory.mktemp("pca-build")
    text = (ROOT / "data_manifests" / "tiny.toml").read_text("utf-8")
    manifest = out / "pca.toml"
    manifest.write_text(text.replace('layouts = ["pca-2d", "tsne-2d"]', 'layouts = ["pca-2d", "pca-3d"]'), "utf-8")
    build(manifest, out / "build", jobs=1, log=lambda msg: None)
    return out / "build"
