"""The per-head tasks of one layer of a capture (what `heads.run_head` needs for each head, read from the capture),
and the model's results put in sequence."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

import numpy as np

from ..capture import CaptureResult
from ..capture.store import LayerCapture, TokenTable
from ..metrics.vision import PatchAttributes
from ..normalize import HeadSample
from ..project import ProjectionParams, align_sequence
from .heads import HeadResult, HeadTask


def has_vocabulary(tok: TokenTable) -> bool:
    """Whether tokens carry vocabulary ids (not image patches, not audio frames, whose vocab_id is -1)."""
    return not tok.is_image and bool((tok.vocab_id >= 0).any())


def layer_tasks(cap: CaptureResult, layer: int, lc: LayerCapture, has_point: np.ndarray, layouts: tuple[str, ...],
                params: ProjectionParams, patches: PatchAttributes | None,
                skip: Collection[int] = ()) -> list[HeadTask]:
    """One task per head of `layer` not in `skip`, laying out `layouts`; `has_point` marks the tokens with points."""
    facts, tok = cap.facts, cap.tokens
    # Image and audio tokens have no vocabulary: token-identity scores (same_token, token_concentration) are omitted.
    vocab = tok.vocab_id if has_vocabulary(tok) else None
    points = None if has_point.all() else np.flatnonzero(has_point)
    grid = np.stack([tok.patch_row, tok.patch_col], axis=1).astype(np.int16) if tok.is_image else None
    attn = {int(s): lc.attention(int(s)) for s in np.unique(tok.sentence_id)}
    weights = cap.qk_weights(layer)
    tasks = []
    for head in range(facts.num_heads):
        if head in skip:
            continue
        kv = facts.kv_head_of_query[head]
        sample = HeadSample(q=lc.q[:, head], k=lc.k[:, kv], sentence_id=tok.sentence_id.astype(np.int64),
                            position=tok.position.astype(np.int64), causal=facts.causal, scaling=facts.scaling,
                            side=tok.side)
        tasks.append(HeadTask(layer, head, kv, sample, {s: a[head] for s, a in attn.items()},
                              vocab, np.linalg.norm(lc.v[:, kv], axis=1), layouts, params,
                              w_q=None if weights is None else weights[0][head],
                              w_k=None if weights is None else weights[1][kv], points=points, grid=grid,
                              patches=patches, values=lc.v[:, kv],
                              lays_out_values=facts.kv_head_of_query.index(kv) == head))
    return tasks


def model_tasks(cap: CaptureResult, layers: Iterable[int], has_point: np.ndarray, layouts: tuple[str, ...],
                params: ProjectionParams, patches: PatchAttributes | None,
                skip: Collection[tuple[int, int]] = ()) -> Iterator[HeadTask]:
    """`layer_tasks` of `layers` in order, each layer read only when its first task is drawn: through one executor
    map, the next layer's heads start while a layer's last heads finish. `skip` holds (layer, head) pairs."""
    for layer in layers:
        yield from layer_tasks(cap, layer, cap.layer(layer), has_point, layouts, params, patches,
                               skip={h for (lr, h) in skip if lr == layer})


def align_results(results: list[HeadResult]) -> list[HeadResult]:
    """Rotate/reflect each head's layouts onto the previous head's (Procrustes) so stepping heads does not flip."""
    for res, layouts in zip(results, align_sequence([r.layouts for r in results])):
        res.layouts = {name: coords.astype(np.float32) for name, coords in layouts.items()}
    return results
