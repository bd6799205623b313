"""The published site leaves out the theme files no reader fetches: source maps and unused search languages."""

from __future__ import annotations

import json
from pathlib import Path

import material

from atlas_build.site.mkdocs_hooks import search_scripts


def test_search_scripts_follow_the_workers_rule() -> None:
    assert search_scripts(["en"]) == set()
    assert search_scripts(["de"]) == {"min/lunr.de.min.js", "min/lunr.stemmer.support.min.js"}
    assert search_scripts(["en", "ja"]) == {"min/lunr.ja.min.js", "tinyseg.js", "min/lunr.multi.min.js",
                                            "min/lunr.stemmer.support.min.js"}
    assert search_scripts(["th"]) == {"min/lunr.th.min.js", "wordcut.js", "min/lunr.stemmer.support.min.js"}


def test_the_installed_themes_worker_loads_what_search_scripts_names() -> None:
    """The rule is the theme's: its search worker must still name these files (a theme upgrade that changes how it
    loads languages fails here)."""
    worker = next((Path(material.__file__).parent / "templates" / "assets" / "javascripts" / "workers")
                  .glob("search.*.min.js")).read_text("utf-8")
    for piece in ("/tinyseg.js", "/wordcut.js", "/min/lunr.multi.min.js", "/min/lunr.stemmer.support.min.js",
                  "/min/lunr.${", '"en"', 'case"ja"', 'case"th"', 'case"hi"'):
        assert piece in worker, piece


def test_built_site_has_no_source_maps_or_unused_search_languages(tiny_build: Path) -> None:
    site = tiny_build / "site"
    assert json.loads((site / "search" / "search_index.json").read_text("utf-8"))["config"]["lang"] == ["en"]
    assert not list(site.rglob("*.map"))
    assert not (site / "assets" / "javascripts" / "lunr").exists()
    assert list((site / "assets" / "javascripts" / "workers").glob("search.*.min.js")), "the worker itself stays"
