"""tt_faiss: tensor-train point clouds as coarse quantizers for faiss IVF indexes.

Importing tt_faiss never imports torch: torch is needed only by ``fit`` (training).
"""
from __future__ import annotations

from ._threads import get_num_threads, set_num_threads
from .cloud import DEFAULT_BEAM, TTPointCloud
from .quantizer import TTQuantizer
from .ivf import IndexIVFTT, SearchParametersIVFTT, set_index_parameter
from .factory import index_factory
from .io import deserialize_index, read_index, serialize_index, write_index
from .interop import to_faiss
from .stats import bucket_stats, knn_recall, list_sizes, recall_at_r
from .anomaly import (CoresetMemoryBank, FullMemoryBank, RandomMemoryBank, TTMemoryBank,
                      TTSampler, anomaly_metrics)

__version__ = "0.1.0"


def fit(x, shape, rank, **recipe):
    """Fit a TTPointCloud to data x (n, d); see tt_faiss.train.fit (imports torch)."""
    from .train import fit as _fit

    return _fit(x, shape, rank, **recipe)


__all__ = [
    "TTPointCloud", "TTQuantizer", "fit", "set_num_threads", "get_num_threads", "DEFAULT_BEAM",
    "IndexIVFTT", "SearchParametersIVFTT", "set_index_parameter", "index_factory",
    "write_index", "read_index", "serialize_index", "deserialize_index", "to_faiss",
    "bucket_stats", "list_sizes", "recall_at_r", "knn_recall",
    "TTMemoryBank", "CoresetMemoryBank", "RandomMemoryBank", "FullMemoryBank", "TTSampler",
    "anomaly_metrics",
]
