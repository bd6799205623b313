"""Typed readers of manifest values that collect every problem instead of stopping at the first (`Ctx`)."""

from __future__ import annotations

import re
from typing import Any, Callable

from .errors import ManifestError


class _Recorded(Exception):
    """A table could not be built from values whose problems are already recorded."""


class _Ctx:
    """Collects problems: `fail` makes one to raise, `check` runs a check and records its problem instead."""

    def __init__(self, path: str):
        self.path = path
        self.problems: list[ManifestError] = []

    def fail(self, key: str, message: str) -> ManifestError:
        return ManifestError(self.path, key, message)

    def check(self, fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        try:
            return fn(*args)
        except ManifestError as e:
            self.problems.extend(e.problems)
        except _Recorded:
            pass
        return default

    def raise_problems(self) -> None:
        if self.problems:
            raise ManifestError.collect(self.problems)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _str(ctx: _Ctx, key: str, v: Any, *, choices: tuple[str, ...] = (), pattern: re.Pattern | None = None,
         what: str = "a string") -> str:
    if not isinstance(v, str):
        raise ctx.fail(key, f"expected {what}, got {_describe(v)}")
    if choices and v not in choices:
        raise ctx.fail(key, f"expected one of {', '.join(choices)}, got {_describe(v)}")
    if pattern is not None and not pattern.match(v):
        raise ctx.fail(key, f"expected {what}, got {_describe(v)}")
    if "\x00" in v:
        raise ctx.fail(key, "contains a NUL character")
    return v


def _int(ctx: _Ctx, key: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.fail(key, f"expected an integer from {lo} to {hi}, got {_describe(v)}")
    if not lo <= v <= hi:
        raise ctx.fail(key, f"expected an integer from {lo} to {hi}, got {v}")
    return v


def _float(ctx: _Ctx, key: str, v: Any, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ctx.fail(key, f"expected a number from {lo} to {hi}, got {_describe(v)}")
    if not lo <= v <= hi:
        raise ctx.fail(key, f"expected a number from {lo} to {hi}, got {v}")
    return float(v)


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ctx.fail(key, f"expected true or false, got {_describe(v)}")
    return v


def _table(ctx: _Ctx, key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ctx.fail(key, f"expected a table, got {_describe(v)}")
    return v


def _fields(ctx: _Ctx, key: str, raw: Any, spec: dict[str, Callable[[str, Any], Any]],
            required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a table against a field spec: unknown keys, bad values and missing required keys are recorded; a bad
    value falls back to its default, and a missing required key makes the whole table fail."""
    table = _table(ctx, key, raw)
    prefix = f"{key}." if key else ""
    out: dict[str, Any] = {}
    for k, v in table.items():
        if k not in spec:
            ctx.problems.append(ctx.fail(f"{prefix}{k}", f"unknown key (expected one of: {', '.join(sorted(spec))})"))
            continue
        before = len(ctx.problems)
        value = ctx.check(spec[k], f"{prefix}{k}", v)
        if len(ctx.problems) == before:
            out[k] = value
    missing = [ctx.fail(f"{prefix}{k}", "required key is missing") for k in required if k not in table]
    if missing:
        raise ManifestError.collect(missing)
    if any(k not in out for k in required):
        raise _Recorded  # a required value was bad: already reported
    return out
