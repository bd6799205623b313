"""How much memory a build's heads need, and how much this machine has: a manifest asking for more points per head
than fit is refused before the build starts (by `atlas validate` and `atlas build`)."""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30
#: Peak RSS of one head unit (normalize, project into pca/t-SNE/UMAP 2D, every score) in a fresh process, measured
#: by benchmarks/bench_large_head.py on the synthetic head: 0.79 GiB at 40k points, 2.16 GiB at 250k points.
#: The line through them: interpreter and libraries, then bytes per point (the head's vectors, attention, kNN
#: graph, t-SNE affinities, UMAP graph, layouts).
HEAD_BASE_BYTES = int(0.53 * GIB)
HEAD_BYTES_PER_POINT = 7_000
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def head_bytes(points: int) -> int:
    """Estimated peak memory of the process that runs one head unit of `points` points."""
    return HEAD_BASE_BYTES + HEAD_BYTES_PER_POINT * points


def points_that_fit(memory: int) -> int:
    """The largest point count per head whose unit fits in `memory` bytes (0 when none does)."""
    return max(0, (memory - HEAD_BASE_BYTES) // HEAD_BYTES_PER_POINT)


def machine_bytes() -> int:
    """Physical memory of this machine, or the container's limit when lower (cgroup v2 or v1)."""
    import psutil

    total = psutil.virtual_memory().total
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
