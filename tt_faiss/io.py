"""Persistence of IndexIVFTT in a versioned single-file format (DESIGN §4).

Layout (little-endian)::

    offset 0   8 bytes   magic b"TTFAISSI"
           8   uint32    format version (FORMAT_VERSION)
          12   uint32    header length H
          16   H bytes   UTF-8 JSON header: index metadata, library versions, and the ordered
                         list of sections {"name", "nbytes"}
        16+H   ...       the sections, concatenated in header order:
                           "cloud"    TTPointCloud.to_bytes() (absent when untrained)
                           "inner"    faiss.serialize_index of the inner IVF index
                           "chain<i>" faiss VectorTransform bytes of pretransform i
                           "refine"   faiss.serialize_index of the RFlat store
        end-4  uint32    CRC32 of every byte before it

Everything is checked (length, magic, version, CRC) before any byte reaches faiss, so a
truncated, corrupted or wrong-version file raises ValueError instead of crashing.
Plain faiss indexes are passed through to faiss.write_index / faiss.read_index.
"""
from __future__ import annotations

import json
import os
import platform
import struct
import zlib

import faiss
import numpy as np

from ._atomic import atomic_write

MAGIC = b"TTFAISSI"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
_FIXED = struct.Struct("<8sII")


def _faiss_bytes(index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def _transform_bytes(vt) -> bytes:
    w = faiss.VectorIOWriter()
    faiss.write_VectorTransform(vt, w)
    return faiss.vector_to_array(w.data).tobytes()


def _read_transform(buf: bytes):
    r = faiss.VectorIOReader()
    faiss.copy_array_to_vector(np.frombuffer(buf, dtype=np.uint8), r.data)
    return faiss.read_VectorTransform(r)


def _versions() -> dict:
    from . import __version__

    return {"tt_faiss": __version__, "faiss": faiss.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def serialize_index(index) -> np.ndarray:
    """IndexIVFTT (or any faiss index) -> uint8 array (the file's bytes)."""
    from .ivf import IndexIVFTT

    if not isinstance(index, IndexIVFTT):
        return faiss.serialize_index(index)
    q = index.quantizer
    sections = []
    if q.is_trained:
        sections.append(("cloud", q.cloud.to_bytes()))
    sections.append(("inner", _faiss_bytes(index.inner)))
    chain_trained = all(vt.is_trained for vt in index.chain)
    if not chain_trained and not index.pretransform_spec:
        raise ValueError("cannot serialize an untrained pretransform that was not built by "
                         "index_factory; train the index first")
    if chain_trained:
        for i, vt in enumerate(index.chain):
            sections.append((f"chain{i}", _transform_bytes(vt)))
    if index.refine:
        sections.append(("refine", _faiss_bytes(index._refine_store)))
    header = {
        "format": "tt_faiss.IndexIVFTT",
        "d": index.d, "d_out": index.d_out, "nlist": index.nlist, "metric": "L2",
        "codec": index.codec, "by_residual": index.by_residual,
        "nprobe": index.nprobe, "beam": q.beam, "refine": index.refine, "k_factor": index.k_factor,
        "ntotal": index.ntotal, "pretransform_spec": index.pretransform_spec,
        "chain_trained": chain_trained,
        "quantizer": {"d": q.d, "shape": list(q.shape), "ranks": list(q.ranks), "trained": q.is_trained},
        "sections": [{"name": n, "nbytes": len(b)} for n, b in sections],
        "versions": _versions(),
    }
    hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
    body = _FIXED.pack(MAGIC, FORMAT_VERSION, len(hbytes)) + hbytes + b"".join(b for _, b in sections)
    crc = struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return np.frombuffer(body + crc, dtype=np.uint8).copy()


def read_header(buf) -> dict:
    """Validate a serialized IndexIVFTT and return its JSON header (raises ValueError)."""
    buf = _as_bytes(buf)
    if len(buf) < _FIXED.size + 4:
        raise ValueError(f"not a tt_faiss index: {len(buf)} bytes is too short (truncated file?)")
    magic, version, hlen = _FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError(f"not a tt_faiss index: bad magic bytes {magic!r} (expected {MAGIC!r})")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unsupported tt_faiss index format version {version} "
                         f"(this tt_faiss {_versions()['tt_faiss']} reads versions {list(READABLE_VERSIONS)})")
    if _FIXED.size + hlen + 4 > len(buf):
        raise ValueError(f"truncated tt_faiss index: header claims {hlen} bytes but the file has "
                         f"{len(buf)} bytes in all")
    (crc,) = struct.unpack_from("<I", buf, len(buf) - 4)
    if zlib.crc32(memoryview(buf)[:-4]) & 0xFFFFFFFF != crc:
        raise ValueError("corrupt tt_faiss index: CRC32 mismatch (the file is truncated or was modified)")
    try:
        header = json.loads(bytes(buf[_FIXED.size:_FIXED.size + hlen]).decode("utf-8"))
        sizes = [int(s["nbytes"]) for s in header["sections"]]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt tt_faiss index header: {e}") from None
    if _FIXED.size + hlen + sum(sizes) + 4 != len(buf):
        raise ValueError(f"corrupt tt_faiss index: sections hold {sum(sizes)} bytes, "
                         f"file body has {len(buf) - _FIXED.size - hlen - 4}")
    header["_data_offset"] = _FIXED.size + hlen
    return header


def deserialize_index(buf):
    """Inverse of serialize_index: bytes / uint8 array -> IndexIVFTT (or a faiss index)."""
    from .cloud import TTPointCloud
    from .ivf import IndexIVFTT
    from .quantizer import TTQuantizer

    buf = _as_bytes(buf)
    if buf[:1] == b"I" and buf[:len(MAGIC)] != MAGIC:  # faiss fourcc ("IxF2", "IwFl", ...)
        return faiss.deserialize_index(np.frombuffer(buf, dtype=np.uint8))
    h = read_header(buf)
    pos, parts, view = h["_data_offset"], {}, memoryview(buf)  # slices without copies
    for s in h["sections"]:
        parts[s["name"]] = view[pos:pos + int(s["nbytes"])]
        pos += int(s["nbytes"])
    try:
        qh = h["quantizer"]
        if "cloud" in parts:
            q = TTQuantizer.from_cloud(TTPointCloud.from_bytes(bytes(parts["cloud"])))
        else:
            q = TTQuantizer(int(qh["d"]), qh["shape"], list(qh["ranks"]) or 1)
        q.beam = int(h["beam"])
        spec, owner = h.get("pretransform_spec"), None
        if spec and not h["chain_trained"]:
            owner = faiss.index_factory(int(h["d"]), spec + ",Flat")
            chain = [faiss.downcast_VectorTransform(owner.chain.at(j)) for j in range(owner.chain.size())]
        else:
            chain = [_read_transform(parts[f"chain{i}"])
                     for i in range(sum(1 for n in parts if n.startswith("chain")))]
        index = IndexIVFTT(q, int(h["d"]), h["codec"], by_residual=bool(h["by_residual"]),
                           pretransform=chain or None, refine=bool(h["refine"]),
                           k_factor=float(h["k_factor"]), nprobe=int(h["nprobe"]))
        inner = faiss.deserialize_index(np.frombuffer(parts["inner"], dtype=np.uint8),
                                        faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)
        if not isinstance(inner, faiss.IndexIVF) or inner.nlist != index.nlist or inner.d != index.d_out:
            raise ValueError("inner faiss index does not match the header")
        index._inner = inner
        index.pretransform_spec = spec
        if owner is not None:
            index._chain_owner = owner
        if index.refine:
            index._refine_store = faiss.deserialize_index(np.frombuffer(parts["refine"], dtype=np.uint8))
    except (KeyError, TypeError) as e:
        raise ValueError(f"corrupt tt_faiss index: missing or bad field {e}") from None
    if index.ntotal != int(h["ntotal"]):
        raise ValueError(f"corrupt tt_faiss index: header says ntotal={h['ntotal']}, lists hold {index.ntotal}")
    return index


def write_index(index, path) -> None:
    """Write an IndexIVFTT (or a plain faiss index) to `path` atomically (temp file + rename)."""
    data = serialize_index(index)
    atomic_write(path, lambda f: f.write(data.tobytes()))

def read_index(path):
    """Read a file written by write_index (or by faiss.write_index)."""
    with open(os.fspath(path), "rb") as f:
        return deserialize_index(f.read())


def _as_bytes(buf) -> bytes:
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise TypeError(f"serialized index must be a uint8 array, got {buf.dtype}")
        return buf.tobytes()
    if isinstance(buf, (bytes, bytearray, memoryview)):
        return bytes(buf)
    raise TypeError(f"serialized index must be bytes or a uint8 numpy array, got {type(buf).__name__}")
