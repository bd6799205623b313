"""Atomic file writes (a temporary sibling renamed into place) and bounded reads of regular files."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success it replaces `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no NaN, stable separators."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def round6(v: float) -> float:
    """The precision every stored score and measure keeps: 6 significant digits."""
    return float(f"{float(v):.6g}")


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (dumps_json(obj) + "\n").encode("utf-8"))


def read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes.

    Opens without blocking (a FIFO would otherwise wait forever for a writer) and reads at most ``limit + 1`` bytes,
    so the cap holds whatever ``st_size`` says (0 for /dev/zero or a pipe). Raises ``ValueError`` with a short reason
    for anything that is not a regular file or is too large; ``OSError`` as the OS reports it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise ValueError(f"{path} is larger than {_size(limit)}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {_size(limit)}")
    return data


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"
