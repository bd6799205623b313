"""The per-head unit of work: normalize → project → metrics (every score, vision and value ones included), and the
value layouts of its key/value head when it is the first query head reading it. Pure: arrays in, arrays and numbers
out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fsutil import atomic_path, write_json
from ..metrics import LayoutTrust, attention_signature, head_scores, label_head, related_heads, signature_plan
from ..metrics.faithfulness import QueryRows, highdim_faithfulness, layout_faithfulness
from ..metrics.registry import ordered, rounded
from ..metrics.values import value_scores, values_by_sentence
from ..metrics.vision import PatchAttributes, head_vision, vision_metrics
from ..normalize import HeadSample, normalize
from ..normalize.joint import JointSet
from ..normalize.padded import padded_space
from ..normalize.pairs import attention_pairs
from ..normalize.values import value_layout_names, value_set
from ..project import LAYOUTS
from ..project import ProjectionParams, align_sequence, project


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
    points: np.ndarray | None = None  # token rows that carry query/key points (Zipf cap); None: every token
    grid: np.ndarray | None = None  # [N, 2] patch (row, column) per token of an image model, -1 for prefix tokens
    patches: PatchAttributes | None = None  # image models: probe attributes per token (vision scores)
    values: np.ndarray | None = None  # [N, dv] value vectors of its key/value head (value scores and layouts)
    lays_out_values: bool = False  # whether this head lays out its key/value head's values (one query head per kv head)


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
    signature: np.ndarray | None = None  #: attention signature (metrics.related); None in results saved without one
    vision: dict = field(default_factory=dict)  #: image models: sorting scores per 2D layout (metrics.vision)
    highdim: dict[str, dict[str, float]] = field(default_factory=dict)  #: per-query faithfulness ceilings by space
    related: list[dict] = field(default_factory=list)  #: filled per model by `add_related`, not stored
    #: the value layouts of its key/value head (normalize.values), [m, 2] per layout; empty unless `lays_out_values`
    value_layouts: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Store arrays in .npy files and numbers in JSON under `path` (a directory), atomically per file."""
        arrays = {**{f"layout_{k}": v for k, v in self.layouts.items()}, "norms": self.norms,
                  **{f"values_{k}": v for k, v in self.value_layouts.items()}}
        if self.signature is not None:
            arrays["signature"] = self.signature
        for name, arr in arrays.items():
            with atomic_path(path / f"{name}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
        write_json(path / "result.json", {
            "layer": self.layer, "head": self.head, "kv_head": self.kv_head, "layouts": sorted(self.layouts),
            "normalization": self.normalization, "metrics": self.metrics, "label": self.label, "trust": self.trust,
            "vision": self.vision, "highdim": self.highdim, "value_layouts": sorted(self.value_layouts)})

    @classmethod
    def load(cls, path: Path) -> "HeadResult":
        meta = json.loads((path / "result.json").read_text())
        layouts = {k: np.load(path / f"layout_{k}.npy") for k in meta["layouts"]}
        sig = path / "signature.npy"
        values = {k: np.load(path / f"values_{k}.npy") for k in meta.get("value_layouts", [])}
        return cls(meta["layer"], meta["head"], meta["kv_head"], layouts, np.load(path / "norms.npy"),
                   meta["normalization"], meta["metrics"], meta["label"], meta["trust"],
                   np.load(sig) if sig.exists() else None, meta.get("vision", {}), highdim=meta.get("highdim", {}),
                   value_layouts=values)


def _subset(s: HeadSample, rows: np.ndarray) -> HeadSample:
    return HeadSample(q=s.q[rows], k=s.k[rows], sentence_id=s.sentence_id[rows], position=s.position[rows],
                      causal=s.causal, scaling=s.scaling, side=None if s.side is None else s.side[rows])


def run_head(task: HeadTask) -> HeadResult:
    """Normalize the head's joint query/key set, project it, and score it."""
    s = task.sample
    ps = s if task.points is None else _subset(s, task.points)  # the points; scores still see every token
    qn, kn, norm = normalize(ps, metric=task.params.metric)
    rows = np.arange(len(s.q)) if task.points is None else np.asarray(task.points)
    qr, kr = ps.query_rows(), ps.key_rows()  # cross-attention: queries and keys are different tokens
    joint = JointSet.of(qn[qr], kn[kr], rows[qr], None if ps.side is None else rows[kr])
    pairs = (attention_pairs(s, joint, task.attention, max_keys=task.params.faithful_keys)
             if any(LAYOUTS[name].method == "faithful" for name in task.layouts) else None)
    padded_x = padded_space(joint.queries, joint.keys)  # the padded layouts' input and the ceiling's
    padded = (JointSet(padded_x.astype(np.float32), joint.token_rows, joint.key_rows)
              if any(LAYOUTS[name].space == "padded" for name in task.layouts) else None)
    layouts = project(joint.x.astype(np.float32), task.layouts, task.params, pairs=pairs,
                      spaces={} if padded is None else {"padded": padded.x})
    norms = np.concatenate([np.linalg.norm(ps.q[qr], axis=1), np.linalg.norm(ps.k[kr], axis=1)]).astype(np.float32)
    metrics = head_scores(s, task.attention, v_norms=task.v_norms, tokens_vocab=task.vocab_id, w_q=task.w_q,
                          w_k=task.w_k, grid=task.grid)
    vision = {} if task.patches is None else head_vision(task.patches, layouts, seed=task.params.seed)
    by_sentence = ({} if task.values is None else
                   value_scores(task.attention, values_by_sentence(s.sentence_id, s.position, task.values), s.causal,
                                s.key_starts()))
    metrics = ordered({**metrics, **vision_metrics(vision), **by_sentence})
    value_layouts = ({} if task.values is None or not task.lays_out_values or not task.params.values else
                     project(value_set(task.values, joint.key_rows if s.side is not None else task.points),
                             value_layout_names(task.layouts), task.params))
    rows = QueryRows.of(s, joint, task.attention)
    trust = layout_trust(ps, joint, padded, task.params.metric, rows, layouts)
    highdim = {space: rounded(v) for space, v in
               highdim_faithfulness(rows, joint, metric=task.params.metric, padded=padded_x).items()}
    plan = signature_plan(s.sentence_id, s.position, task.vocab_id, s.causal, key_starts=s.key_starts())
    return HeadResult(task.layer, task.head, task.kv_head, layouts, norms, norm.to_json(), rounded(metrics),
                      label_head(metrics), trust, attention_signature(task.attention, plan), vision=vision,
                      highdim=highdim, value_layouts=value_layouts)


def layout_trust(points: HeadSample, joint: JointSet, padded: JointSet | None, metric: str, rows: QueryRows,
                 layouts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Each layout's trust and per-query faithfulness. Trustworthiness is against the space the layout is computed
    from; a layout of the padded space also gets ``trustworthiness_normalised``, against the joint set the other
    layouts are computed from, so that its neighbourhoods can be compared with theirs."""
    normalised = LayoutTrust(points, joint, metric=metric)
    own = {"normalised": normalised}
    if padded is not None:
        own["padded"] = normalised.against(padded, metric=metric)
    out = {}
    for name, coords in layouts.items():
        space = LAYOUTS[name].space
        t = own[space](coords)
        if space != "normalised":
            t["trustworthiness_normalised"] = normalised(coords).get("trustworthiness")
        out[name] = rounded({**t, **layout_faithfulness(rows, coords)})
    return out


def add_related(results: list[HeadResult]) -> list[HeadResult]:
    """Set each result's `related` heads from one correlation matrix of all the model's signatures, and align the
    value layouts in head order (`align_values`)."""
    for res, rel in zip(results, related_heads([(r.layer, r.head) for r in results],
                                               [r.signature for r in results])):
        res.related = rel
    return align_values(results)


def align_values(results: list[HeadResult]) -> list[HeadResult]:
    """Rotate/reflect each value layout onto the previous one laid out (Procrustes), as the query/key layouts."""
    carriers = [r for r in results if r.value_layouts]
    for res, layouts in zip(carriers, align_sequence([r.value_layouts for r in carriers])):
        res.value_layouts = {name: coords.astype(np.float32) for name, coords in layouts.items()}
    return results
