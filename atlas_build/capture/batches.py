"""Resumable capture: each forward batch is written to its own directory and renamed into place once complete, so an
interrupted capture (Ctrl-C, kill -9) restarts at the first missing batch and ends byte-identical to a clean one.

``plan.json`` records what the batches belong to (model, selection, batch size, dtype); a directory holding batches of
another plan is cleared first. ``capture.json`` (written last) carries the plan's digest: a finished capture of the same
plan is returned as is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import InputError
from . import hook
from .facts import ModelFacts
from .sources import LoadedModel
from .store import (BATCHES_DIR, IMAGES_DIR, META_FILE, PLAN_FILE, TOKENS_FILE, WEIGHTS_FILE, BatchWriter,
                    committed_batches, plan_digest, read_meta, write_json_atomic)
from .weights import qk_weights

TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}

# (valid-token mask or None, model inputs) of one batch, built only for batches that still need a forward pass.
InputsOf = Callable[[int], tuple["torch.Tensor | None", dict[str, Any]]]


def check_finite(source: str, where: str, ids: Sequence[int], computed: torch.dtype, stored: dict[str, np.ndarray],
                 unrounded: Callable[[str], np.ndarray]) -> None:
    """An `InputError` when an array about to be stored (`stored`: name → values in the capture's dtype) holds NaN
    or ±inf, naming the model, the place (`where`, such as "layer 3"), the inputs (`ids`) and the cause: the
    model's own values (`unrounded(name)`, before the capture's rounding; `computed` in this dtype) were not finite,
    or they were and exceed what the capture's dtype holds."""
    bad = [name for name, values in stored.items() if not np.isfinite(values).all()]
    if not bad:
        return
    shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
    broken = [name for name in bad if not np.isfinite(unrounded(name)).all()]
    if broken:
        why = ("the weights hold NaN or inf, or the arithmetic overflows even in float32" if computed == torch.float32
               else f"the arithmetic overflows in {str(computed).removeprefix('torch.')} (models[].dtype = \"float32\" "
               "avoids that) or the weights hold NaN or inf")
        raise InputError(f"{source}: its forward pass gave NaN or infinite {' and '.join(broken)} in {where} (inputs "
                         f"{shown}): {why}")
    largest = max(float(np.abs(unrounded(name)).max()) for name in bad)
    raise InputError(f"{source}: {' and '.join(bad)} in {where} reach {largest:.3g} (inputs {shown}), beyond the "
                     f"largest value of the capture's {next(iter(stored.values())).dtype}: set [build] capture_dtype = "
                     "\"float32\"")


@dataclass(frozen=True)
class Batch:
    """One forward batch: its sequences' ids in order, their real lengths (None: every sequence is full length, as
    for images) and its weight on the progress bar."""

    ids: tuple[int, ...]
    lengths: tuple[int, ...] | None
    count: int


class BatchSink:
    """Recorder: for each layer's attention call (in layer order), keep only real tokens and append them to the
    batch's writer (none: a pass that only looks at the modules). The first module seen per layer is kept."""

    def __init__(self, dtype: str, source: str):
        self.dtype, self.source = TORCH_DTYPES[dtype], source
        self.writer: BatchWriter | None = None
        self.batch = Batch((), None, 0)
        self.valid: torch.Tensor | None = None
        self.layers = 0
        self.modules: dict[int, torch.nn.Module] = {}

    def start(self, writer: BatchWriter | None, batch: Batch, valid: torch.Tensor | None) -> None:
        self.writer, self.batch, self.layers = writer, batch, 0
        self.valid = None if valid is None else valid.bool()

    def __call__(self, call: hook.AttentionCall) -> None:
        if call.layer != self.layers:
            raise RuntimeError(f"attention call for layer {call.layer}, expected layer {self.layers}")
        self.layers += 1
        self.modules.setdefault(call.layer, call.module)
        if self.writer is None:
            return
        dt, valid = self.dtype, self.valid
        B, _, T, _ = call.query.shape
        lengths = list(self.batch.lengths) if self.batch.lengths is not None else [T] * B

        def rows(x: torch.Tensor, dt: torch.dtype = dt) -> np.ndarray:  # [B, h, T, d] → [n_real, h, d]
            x = x.transpose(1, 2)
            x = x[valid] if valid is not None else x.reshape(-1, *x.shape[2:])
            return x.to(dt).cpu().numpy()

        def weights(dt: torch.dtype = dt) -> np.ndarray:
            return torch.cat([call.weights[b, :, :n, :n].reshape(-1) for b, n in enumerate(lengths)]).to(dt).cpu() \
                .numpy()

        tensors = {"queries": call.query, "keys": call.key, "values": call.value}
        stored = {name: rows(x) for name, x in tensors.items()} | {"attention": weights()}
        check_finite(self.source, f"layer {call.layer}", self.batch.ids, call.query.dtype, stored,
                     lambda name: weights(torch.float32) if name == "attention" else rows(tensors[name], torch.float32))
        self.writer.write(stored["queries"], stored["keys"], stored["values"], list(self.batch.ids), lengths,
                          stored["attention"])

    def qk_weights(self, facts: ModelFacts) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per-layer (W_Q, W_K) when every layer's attention module exposes them, else {}."""
        out = {}
        for layer in range(facts.num_layers):
            module = self.modules.get(layer)
            w = None if module is None else qk_weights(module, facts.num_heads, facts.num_kv_heads,
                                                       facts.head_dim)
            if w is None:
                return {}
            out[layer] = w
        return out


def is_finished(out_dir: Path, digest: str) -> bool:
    """Whether ``out_dir`` holds a finished capture of the plan with this digest."""
    try:
        return read_meta(out_dir).get("plan") == digest
    except (FileNotFoundError, ValueError, KeyError):
        return False


def resume(out_dir: Path, plan: dict[str, Any]) -> set[int]:
    """Make ``out_dir`` ready to capture ``plan``: unfinished outputs go, batches committed under the same plan stay
    (batches and images of another plan go too). Returns the indices of the batches kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (META_FILE, TOKENS_FILE, WEIGHTS_FILE):
        (out_dir / name).unlink(missing_ok=True)
    tmps = [*out_dir.glob("*.tmp"), *(out_dir / BATCHES_DIR).glob(".*.tmp"), *(out_dir / IMAGES_DIR).glob("*.tmp")]
    for stale in tmps:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    path = out_dir / PLAN_FILE
    try:
        same = path.exists() and plan_digest(json.loads(path.read_text(encoding="utf-8"))) == plan_digest(plan)
    except ValueError:
        same = False
    if not same:
        for d in (out_dir / BATCHES_DIR, out_dir / IMAGES_DIR):
            shutil.rmtree(d, ignore_errors=True)
        write_json_atomic(plan, path)
    return committed_batches(out_dir)


def _forward(loaded: LoadedModel, sink: BatchSink, writer: BatchWriter | None, batch: Batch,
             valid: torch.Tensor | None, inputs: dict[str, Any]) -> None:
    sink.start(writer, batch, valid)
    loaded.forwarder.run(loaded.model, sink, **inputs)
    if sink.layers != loaded.facts.num_layers:
        raise RuntimeError(f"forward pass recorded {sink.layers} of {loaded.facts.num_layers} layers")


def run_batches(loaded: LoadedModel, out_dir: Path, batches: Sequence[Batch], inputs_of: InputsOf, dtype: str,
                done: set[int], unit: str, progress: bool) -> BatchSink:
    """Run and commit every batch not in ``done``. With every batch already done, one unrecorded pass over the
    first batch still finds the attention modules (for their q/k weights)."""
    from tqdm.auto import tqdm

    sink = BatchSink(dtype, loaded.source)
    bar = tqdm(total=sum(b.count for b in batches), initial=sum(b.count for i, b in enumerate(batches) if i in done),
               unit=unit, desc=f"capture {loaded.source}", disable=not progress, leave=False)
    try:
        for i, batch in enumerate(batches):
            if i in done:
                continue
            writer = BatchWriter(out_dir, i, dtype)
            try:
                _forward(loaded, sink, writer, batch, *inputs_of(i))
            except BaseException:
                writer.abort()
                raise
            writer.commit()
            bar.update(batch.count)
    finally:
        bar.close()
    if not sink.modules and batches:
        _forward(loaded, sink, None, batches[0], *inputs_of(0))
    return sink
