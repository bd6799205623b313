"""The per-head unit of work: normalize → project → metrics. Pure: arrays in, arrays and numbers out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fsutil import atomic_path, write_json
from ..metrics import head_scores, label_head, trust_scores
from ..normalize import HeadSample, normalize
from ..project import ProjectionParams, project


@dataclass
class HeadTask:
    layer: int
    head: int
    kv_head: int
    sample: HeadSample
    attention: dict[int, np.ndarray]
    vocab_id: np.ndarray | None  # None: tokens have no vocabulary (image patches)
    v_norms: np.ndarray
    layouts: tuple[str, ...]
    params: ProjectionParams
    w_q: np.ndarray | None = None  # [d, D] the head's query projection rows, when the model exposes them
    w_k: np.ndarray | None = None  # [d, D] its key head's key projection rows


@dataclass
class HeadResult:
    layer: int
    head: int
    kv_head: int
    layouts: dict[str, np.ndarray]
    norms: np.ndarray
    normalization: dict
    metrics: dict[str, float]
    label: str
    trust: dict[str, dict[str, float]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Store arrays in .npy files and numbers in JSON under `path` (a directory), atomically per file."""
        for name, arr in {**{f"layout_{k}": v for k, v in self.layouts.items()}, "norms": self.norms}.items():
            with atomic_path(path / f"{name}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
        write_json(path / "result.json", {
            "layer": self.layer, "head": self.head, "kv_head": self.kv_head, "layouts": sorted(self.layouts),
            "normalization": self.normalization, "metrics": self.metrics, "label": self.label, "trust": self.trust})

    @classmethod
    def load(cls, path: Path) -> "HeadResult":
        meta = json.loads((path / "result.json").read_text())
        layouts = {k: np.load(path / f"layout_{k}.npy") for k in meta["layouts"]}
        return cls(meta["layer"], meta["head"], meta["kv_head"], layouts, np.load(path / "norms.npy"),
                   meta["normalization"], meta["metrics"], meta["label"], meta["trust"])


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.6g}") for k, v in sorted(d.items()) if v is not None and np.isfinite(v)}


def run_head(task: HeadTask) -> HeadResult:
    """Normalize the head's joint query/key set, project it, and score it."""
    s = task.sample
    qn, kn, norm = normalize(s, metric=task.params.metric)
    joint = np.concatenate([qn, kn]).astype(np.float32)
    layouts = project(joint, task.layouts, task.params)
    norms = np.concatenate([np.linalg.norm(s.q, axis=1), np.linalg.norm(s.k, axis=1)]).astype(np.float32)
    metrics = head_scores(s, task.attention, v_norms=task.v_norms, tokens_vocab=task.vocab_id, w_q=task.w_q,
                          w_k=task.w_k)
    trust = {name: _round(trust_scores(s, qn, kn, coords)) for name, coords in layouts.items()}
    return HeadResult(task.layer, task.head, task.kv_head, layouts, norms, norm.to_json(), _round(metrics),
                      label_head(metrics), trust)
