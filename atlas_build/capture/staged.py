"""A staged batch directory: Arrow IPC files written under a temporary name beside their final place (``.<name>.tmp``),
renamed into place by `commit` (replacing an earlier one) or removed by `abort`, so readers only ever see complete
batches. The capture stores' batch writers build on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc


class StagedBatch:
    """A fresh temporary directory for ``final`` holding one Arrow IPC file per name; each `_write` appends a record
    batch to its file (opened with that batch's schema on first use)."""

    def __init__(self, final: Path, dtype: str):
        self.dtype = dtype
        self.final = Path(final)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self._writers: dict[str, ipc.RecordBatchFileWriter] = {}
        self._sinks: list[pa.NativeFile] = []

    def _write(self, name: str, batch: pa.RecordBatch) -> None:
        if name not in self._writers:
            sink = pa.OSFile(str(self.tmp / name), "wb")
            self._sinks.append(sink)
            self._writers[name] = ipc.new_file(sink, batch.schema)
        self._writers[name].write_batch(batch)

    def _close(self) -> None:
        for w in self._writers.values():
            w.close()
        for s in self._sinks:
            s.close()
        self._writers, self._sinks = {}, []

    def commit(self) -> None:
        """Finish every file and rename the directory into place."""
        self._close()
        shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        """Finish the files and remove the temporary directory."""
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)
