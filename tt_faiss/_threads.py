"""Thread count of the C++ core: follows faiss.omp_get_max_threads() unless the user sets it."""
from __future__ import annotations

import faiss

from . import _core

_user_threads: int | None = None


def set_num_threads(n: int | None) -> None:
    """Use n threads in the C++ core (None: follow faiss.omp_get_max_threads())."""
    global _user_threads
    if n is not None:
        _core.set_num_threads(int(n))  # validates n >= 1
    _user_threads = None if n is None else int(n)


def get_num_threads() -> int:
    """Threads the C++ core will use for the next call."""
    return _user_threads if _user_threads is not None else max(1, faiss.omp_get_max_threads())


def _sync_threads() -> None:
    _core.set_num_threads(get_num_threads())
