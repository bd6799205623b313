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
