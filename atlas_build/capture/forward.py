"""How a forward pass reports each layer's attention call, chosen once per model by probing.

`InterfaceForwarder` routes the calls of the capturing attention function (`hook`); `HookForwarder` reads the q/k/v
projections and ``output_attentions`` of models whose attention bypasses that interface (`fallback`).
`probe` picks the first that sees every layer and describes the model from what it saw (`facts`).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SourceError
from . import fallback, hook
from .attention_math import estimate_scaling
from .facts import ModelFacts, describe, is_causal, probe_inputs, text_config


class Forwarder(abc.ABC):
    """Runs one forward pass (no grad) reporting every layer's attention call, in layer order, to a recorder."""

    mode = ""  # ModelFacts.capture_mode

    @abc.abstractmethod
    def run(self, model: nn.Module, recorder: hook.Recorder, **inputs: Any) -> Any:
        """The model's output; ``recorder`` has seen one call per layer."""

    def record(self, model: nn.Module, **inputs: Any) -> list[hook.AttentionCall]:
        """One forward pass's attention calls, detached, in layer order."""
        calls: list[hook.AttentionCall] = []

        def keep(c: hook.AttentionCall) -> None:
            calls.append(hook.AttentionCall(c.layer, c.module, c.query.detach(), c.key.detach(), c.value.detach(),
                                            c.weights.detach(), c.scaling,
                                            None if c.mask is None else c.mask.detach()))

        self.run(model, keep, **inputs)
        return sorted(calls, key=lambda c: c.layer)


@dataclass(frozen=True)
class InterfaceForwarder(Forwarder):
    """Through the capturing attention function registered in transformers' AttentionInterface."""

    mode = "interface"

    def run(self, model: nn.Module, recorder: hook.Recorder, **inputs: Any) -> Any:
        with torch.no_grad(), hook.recording(recorder):
            return model(**inputs)


@dataclass(frozen=True)
class HookForwarder(Forwarder):
    """Through forward hooks on the q/k/v projections plus the model's own ``output_attentions``."""

    plan: fallback.HookPlan
    mode = "hooks"

    def run(self, model: nn.Module, recorder: hook.Recorder, **inputs: Any) -> Any:
        with torch.no_grad():
            return fallback.hooked_forward(model, self.plan, recorder, **inputs)


def choose_forwarder(model: nn.Module, config: Any,
                     inputs: dict[str, torch.Tensor]) -> tuple[Forwarder, list[hook.AttentionCall]]:
    """The forwarder that sees the model's attention on ``inputs``, with the calls it recorded there: the
    interface when the model calls it, else projection hooks with the scaling estimated from the model's own
    probabilities. A `SourceError` when neither applies."""
    interface = InterfaceForwarder()
    calls = interface.record(model, **inputs)
    if calls:
        return interface, calls
    plan = fallback.find_plan(model, config)
    if plan is None:
        raise SourceError(type(model).__name__, "unsupported architecture: its attention neither goes through "
                                                "transformers' AttentionInterface nor has separate q/k/v "
                                                "projections to hook")
    calls = HookForwarder(plan).record(model, **inputs)
    scaling = estimate_scaling([(c.query, c.key, c.weights) for c in calls], is_causal(calls, config))
    hooks = HookForwarder(dataclasses.replace(plan, scaling=scaling))
    return hooks, hooks.record(model, **inputs)


def probe(model: nn.Module, tokenizer: Any, device: torch.device) -> tuple[Forwarder, ModelFacts]:
    """Choose the model's forwarder with one probe input and describe its attention from what it recorded."""
    inputs = probe_inputs(model, tokenizer, device)
    forwarder, calls = choose_forwarder(model, text_config(model.config), inputs)
    return forwarder, describe(model, tokenizer, inputs, calls, forwarder.mode)
