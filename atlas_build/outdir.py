"""The build directory OUT: one build at a time, nothing deleted that a build did not make, an atomic publish.

OUT holds what a build makes (`OWNED`) beside a marker file naming them. A build refuses an OUT that is the root
or home directory, or that holds one of those names without the marker (a user's own `site/`). It takes an OS lock
on `OUT/.atlas.lock` for its whole run, so a second build of the same OUT stops at once. The finished site is
built into `OUT/.site.new` and swapped with `OUT/site` in one atomic rename (Linux `renameat2(RENAME_EXCHANGE)`),
so `OUT/site` is always a whole site; where the exchange is not available, two renames are used and an interrupted
publish is put right by the next build (and `atlas serve` serves the previous site meanwhile).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .fsutil import write_json

MARKER = ".atlas-build.json"
LOCK = ".atlas.lock"
SITE, CACHE, STAGING, NEW_SITE, OLD_SITE = "site", "cache", ".staging", ".site.new", ".site.old"
OWNED = (SITE, CACHE, STAGING, NEW_SITE, OLD_SITE)
MARKER_SCHEMA = 1


def check_location(out: Path) -> Path:
    """The resolved OUT, or InputError for a location a build must never take over."""
    resolved = Path(os.path.abspath(out.expanduser()))
    home = Path(os.path.abspath(Path.home()))
    if resolved == Path(resolved.anchor):
        raise InputError(f"{out}: refusing to build into the root directory; choose an output folder with -o")
    if resolved == home or resolved in home.parents:
        raise InputError(f"{out}: refusing to build into your home directory or above it; choose an output folder "
                         "with -o (e.g. build/atlas)")
    if resolved.exists() and not resolved.is_dir():
        raise InputError(f"{out}: exists and is not a directory; choose an output folder with -o")
    return resolved


def _legacy(out: Path, name: str) -> bool:
    """Made by a build from before the marker existed (recognised by its shape)."""
    path = out / name
    if name == SITE:
        return (path / "index.html").is_file() and (path / "assets" / "atlas" / "atlas.js").is_file()
    if name == CACHE:
        from .cache import UNIT_RE

        return all(child.name.startswith("_") or (child.is_dir() and all(UNIT_RE.match(u.name) for u in child.iterdir()))
                   for child in path.iterdir())
    return False


def _check_owned(out: Path) -> None:
    if (out / MARKER).is_file():
        return
    for name in OWNED:
        path = out / name
        if (path.exists() or path.is_symlink()) and not (path.is_dir() and not path.is_symlink() and _legacy(out, name)):
            raise InputError(f"{path}: exists and was not made by `atlas build` (no {MARKER} in {out}); a build "
                             "would replace it. Move it away or choose another output folder with -o")


def _holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text("utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def claim(out: Path) -> Iterator[Path]:
    """Lock OUT for one build and mark it as the build's; yields the resolved OUT. InputError when OUT is refused,
    not writable, or already being built."""
    import fcntl

    out = check_location(out)
    if out.is_dir():
        _check_owned(out)  # before anything is written; checked again under the lock
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise InputError(f"{out}: cannot write the output folder ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{out}: another `atlas build` is writing this output folder ({_holder(out / LOCK)}); "
                             "wait for it to finish or choose another folder with -o") from None
        _check_owned(out)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            write_json(out / MARKER, {"tool": "attention-atlas", "schema": MARKER_SCHEMA, "owns": list(OWNED)})
        except OSError as e:
            raise InputError(f"{out}: cannot write the output folder ({e.strerror or e})") from None
        recover(out)
        yield out
    finally:
        os.close(fd)  # releases the lock


def recover(out: Path) -> None:
    """Finish or undo what an interrupted publish left (only in a marked OUT): a site moved aside comes back."""
    site, old, new = out / SITE, out / OLD_SITE, out / NEW_SITE
    for name in (SITE, CACHE, STAGING, OLD_SITE, NEW_SITE):
        path = out / name
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise InputError(f"{path}: is not a folder made by `atlas build`; move it away")
    if not site.exists() and (old / "index.html").is_file():
        os.replace(old, site)
    for leftover in (old, new):
        if leftover.exists():
            shutil.rmtree(leftover)


def servable(out: Path) -> Path | None:
    """The complete site of a build directory (the previous one while a publish is interrupted), or None."""
    for name in (SITE, OLD_SITE):
        if (out / name / "index.html").is_file():
            return out / name
    return None


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically; False where the OS or file system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def publish(out: Path) -> Path:
    """Make `OUT/.site.new` the site at `OUT/site`; the replaced site is deleted afterwards."""
    site, new, old = out / SITE, out / NEW_SITE, out / OLD_SITE
    if not site.exists():
        os.replace(new, site)
    elif _exchange(new, site):
        shutil.rmtree(new)  # now the previous site
    else:
        os.replace(site, old)
        os.replace(new, site)
        shutil.rmtree(old)
    return site
