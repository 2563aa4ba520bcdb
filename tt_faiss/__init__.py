"""tt_faiss: tensor-train point clouds as coarse quantizers for faiss IVF indexes.

Importing tt_faiss never imports torch: torch is needed only by ``fit`` (training).
"""
from __future__ import annotations

from ._threads import get_num_threads, set_num_threads
from .cloud import DEFAULT_BEAM, TTPointCloud
from .quantizer import TTQuantizer

__version__ = "0.1.0"


def fit(x, shape, rank, **recipe):
    """Fit a TTPointCloud to data x (n, d); see tt_faiss.train.fit (imports torch)."""
    from .train import fit as _fit

    return _fit(x, shape, rank, **recipe)


__all__ = ["TTPointCloud", "TTQuantizer", "fit", "set_num_threads", "get_num_threads", "DEFAULT_BEAM"]
