"""The heads stage streams a model's layers through one executor map: the next layer is read, and its heads start,
while a layer's last heads are still running, and the site is the same bytes as a build that waits per layer."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

import atlas_build.pipeline as pipeline
import atlas_build.pipeline.tasks as tasks_module
from atlas_build.executor import LocalExecutor

ROOT = Path(__file__).resolve().parents[1]


class Windowed(LocalExecutor):
    """In this process, but drawing `window` items before computing the first, as a pool of workers does."""

    def __init__(self, window: int, events: list[str]):
        self.window, self.events = window, events

    def map(self, fn, items, *, desc="", progress=False, contain=(), total=None):
        self.events.append(f"map {desc} ({total} items)")
        pending: deque = deque()
        for item in items:
            pending.append(item)
            if len(pending) == self.window:
                yield fn(pending.popleft())
        while pending:
            yield fn(pending.popleft())


def test_the_next_layer_starts_before_a_layer_is_done_and_the_site_is_unchanged(
        tiny_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    layer_tasks = tasks_module.layer_tasks

    def reading(cap, layer, *args, **kwargs):
        events.append(f"read L{layer}")
        return layer_tasks(cap, layer, *args, **kwargs)

    monkeypatch.setattr(tasks_module, "layer_tasks", reading)
    monkeypatch.setattr(pipeline, "make_executor", lambda **kw: Windowed(3, events))
    pipeline.build(ROOT / "data_manifests" / "tiny.toml", tmp_path / "out", log=events.append)

    heads = events[next(i for i, e in enumerate(events) if "heads: computing" in e):]
    # tiny.toml: 2 layers x 4 heads, one map for all 8; with 3 items drawn ahead, layer 1 is read after layer 0's
    # first result and before its last one
    assert [e for e in heads if e.startswith("map")] == ["map tiny-bert heads (8 items)"]
    assert [e for e in heads if e.startswith("read") or "done" in e] == [
        "read L0", "read L1", "[tiny-bert] heads: layer 0 done", "[tiny-bert] heads: layer 1 done"]
    first_look = events[:events.index(heads[0])]
    assert [e for e in first_look if e.startswith("map")] == ["map Tiny random BERT first look (8 items)"]

    def files(site: Path) -> dict[str, bytes]:
        return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}

    assert files(tmp_path / "out" / "site") == files(tiny_build / "site")
