"""to_faiss: turn an IndexIVFTT into a plain faiss index with materialised centroids."""
from __future__ import annotations

import faiss
import numpy as np


def to_faiss(index, beam_to_exact: bool = True):
    """Plain faiss copy of an IndexIVFTT: an IndexIVF* whose IndexFlatL2 quantizer holds all
    nlist TT points (nlist x d floats: mind the memory), wrapped in IndexPreTransform for
    OPQ/PCA prefixes and IndexRefineFlat for RFlat. Codes are shared bit for bit: the TT
    index stores x - c(list) for residual codecs, exactly what faiss stores with by_residual.

    The faiss copy assigns queries exactly (flat quantizer); results equal the TT index's at a
    beam wide enough for exact coarse search. Requires RFlat indexes to hold ids 0..ntotal-1.
    """
    from .ivf import IndexIVFTT

    if not isinstance(index, IndexIVFTT):
        raise TypeError(f"to_faiss takes an IndexIVFTT, got {type(index).__name__}")
    index._require_trained()
    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    quantizer = faiss.IndexFlatL2(index.d_out)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))

    ivf = faiss.deserialize_index(faiss.serialize_index(index.inner), faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)
    # the deserialized placeholder quantizer (empty, a few bytes) is dropped; ivf owns the new one
    ivf.quantizer = quantizer
    ivf.own_fields = True
    quantizer.this.disown()
    ivf.by_residual = index.by_residual
    if isinstance(ivf, faiss.IndexIVFPQ) and ivf.by_residual:
        ivf.precompute_table()
    ivf.nprobe = index.nprobe
    out = ivf
    if index._fastscan_bbs is not None:
        fs = faiss.IndexIVFPQFastScan(ivf, index._fastscan_bbs)
        fs.nprobe = index.nprobe
        fs.referenced_objects = [ivf]  # fs points at ivf's quantizer
        out = fs
    for vt in reversed(index.chain):
        from .factory import _clone_transform

        vt2 = _clone_transform(vt)
        pt = faiss.IndexPreTransform(vt2, out)
        pt.referenced_objects = [out, vt2]
        out = pt
    if index.refine:
        n = index.ntotal
        try:
            raw = index._refine_store.reconstruct_batch(np.arange(n, dtype=np.int64))
        except RuntimeError:
            raise ValueError("to_faiss with RFlat needs ids 0..ntotal-1 (faiss IndexRefineFlat "
                             "addresses raw vectors by position)") from None
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        rf = faiss.IndexRefineFlat(out, faiss.swig_ptr(raw))  # copies raw
        rf.referenced_objects = [out]
        rf.k_factor = index.k_factor
        out = rf
    return out
