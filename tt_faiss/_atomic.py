"""Atomic file writes: every file tt_faiss writes goes through here."""
from __future__ import annotations

import os
import tempfile
from typing import Callable, IO


def atomic_write(path, write: Callable[[IO[bytes]], None]) -> None:
    """Call write(f) on a temp file beside `path`, fsync it, then rename it over `path`.

    A crash or an exception leaves `path` as it was (old content or absent), never half written.
    The parent folder is created if missing; the file gets the usual umask permissions.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
