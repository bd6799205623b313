"""The notebook API's manifest handling: dicts and Manifest objects round-trip through the TOML the pipeline reads."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import atlas_build
from atlas_build.errors import ManifestError
from atlas_build.notebook import manifest_dict, manifest_toml

MANIFESTS = sorted((Path(__file__).resolve().parents[1] / "data_manifests").glob("*.toml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_round_trips_through_toml(path):
    manifest = atlas_build.load_manifest(path)
    text = manifest_toml(manifest_dict(manifest))
    assert atlas_build.parse_manifest(tomllib.loads(text), path) == manifest


def test_strings_keep_every_character():
    data = {"site": {"title": 'a "quoted" \\ title\nwith\ttabs, é, 😀 and \x7f\x01'},
            "models": [{"name": "m", "config": {"hidden size": 32, "flag": True, "rate": 0.5}}]}
    assert tomllib.loads(manifest_toml(data)) == data


def test_package_exports_the_api():
    assert {"build", "load_manifest", "show_head", "show_sentence"} <= set(dir(atlas_build))
    assert atlas_build.build.__module__ == "atlas_build.notebook"


def test_build_rejects_a_bad_dict_before_writing_anything(tmp_path):
    with pytest.raises(ManifestError):
        atlas_build.build({"site": {"title": "x"}}, tmp_path / "out", base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
