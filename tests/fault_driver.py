"""Run the ``atlas`` command with a fault point: ``python fault_driver.py N ARGS...`` runs ``atlas ARGS...`` and
SIGKILLs itself right after the N-th capture batch it commits (how tests kill a build mid-capture at a known point)."""

from __future__ import annotations

import os
import signal
import sys

from atlas_build import cli
from atlas_build.capture import batches


def kill_after_commits(n: int) -> None:
    """Make capture's batch writer SIGKILL the process once ``n`` batches are committed."""
    committed = 0

    class KillingWriter(batches.BatchWriter):
        def commit(self) -> None:
            nonlocal committed
            super().commit()
            committed += 1
            if committed == n:
                os.kill(os.getpid(), signal.SIGKILL)

    batches.BatchWriter = KillingWriter


if __name__ == "__main__":
    kill_after_commits(int(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
