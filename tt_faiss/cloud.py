"""TTPointCloud: the tensor-train point cloud model (paper section 2, appendices B and C).

A cloud with shape (N1, ..., Nk) and ranks (r1, ..., r(k-1)) holds N1*...*Nk points of R^d:

    point(i1, ..., ik) = G1[:, i1, :] @ G2[:, i2, :] @ ... @ Gk[:, ik]

with cores G1 (d, N1, r1), Gi (r(i-1), Ni, ri), Gk (r(k-1), Nk); a single core is (d, N1), a
plain centroid table. Point ids are flat row-major multi-indices (i1 slowest). Level-a
centroids are the means over the suffix (i(a+1), ..., ik) (eq. 13) and form a hierarchical
clustering that beam search descends (Algorithm 1). All numerics run in the C++ core.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Sequence

import numpy as np

from . import _core
from ._atomic import atomic_write
from ._threads import _sync_threads
from ._validate import as_float_matrix, as_ids, as_positive_int

DEFAULT_BEAM = 32

_MAGIC = b"TTCLOUD\0"
_VERSION = 1


class TTPointCloud:
    """A TT point cloud, immutable once built.

    Parameters
    ----------
    cores : list of arrays
        k == 1: ``[(d, N1)]``; k >= 2: ``[(d, N1, r1), (r1, N2, r2), ..., (r(k-1), Nk)]``.
        Copied to float32; NaN/Inf or inconsistent ranks raise ValueError.
    """

    def __init__(self, cores: Sequence[np.ndarray]):
        if isinstance(cores, np.ndarray) or not isinstance(cores, (list, tuple)) or len(cores) == 0:
            raise TypeError("cores must be a non-empty list of numpy arrays")
        k = len(cores)
        arrs = []
        for a, c in enumerate(cores):
            c = np.asarray(c)
            if not np.issubdtype(c.dtype, np.floating):
                raise TypeError(f"core {a} must have a floating dtype, got {c.dtype}")
            arrs.append(np.array(c, dtype=np.float32, order="C", copy=True))
        if k == 1:
            if arrs[0].ndim != 2:
                raise ValueError(f"a single core must be 2-D (d, N1), got shape {arrs[0].shape}")
            d, n1 = arrs[0].shape
            shape, ranks = (n1,), ()
        else:
            if arrs[0].ndim != 3:
                raise ValueError(f"core 0 must be 3-D (d, N1, r1), got shape {arrs[0].shape}")
            if arrs[-1].ndim != 2:
                raise ValueError(f"core {k - 1} (last) must be 2-D (r, Nk), got shape {arrs[-1].shape}")
            d = arrs[0].shape[0]
            shape = [arrs[0].shape[1]]
            ranks = [arrs[0].shape[2]]
            for a in range(1, k - 1):
                c = arrs[a]
                if c.ndim != 3:
                    raise ValueError(f"core {a} must be 3-D (r, N, r), got shape {c.shape}")
                if c.shape[0] != ranks[-1]:
                    raise ValueError(f"core {a} has left rank {c.shape[0]}, expected {ranks[-1]} "
                                     f"(right rank of core {a - 1})")
                shape.append(c.shape[1])
                ranks.append(c.shape[2])
            if arrs[-1].shape[0] != ranks[-1]:
                raise ValueError(f"core {k - 1} has left rank {arrs[-1].shape[0]}, expected {ranks[-1]}")
            shape.append(arrs[-1].shape[1])
            shape, ranks = tuple(shape), tuple(ranks)
        if d < 1 or min(shape) < 1 or (ranks and min(ranks) < 1):
            raise ValueError(f"empty core: d={d}, shape={shape}, ranks={ranks}")
        for a, c in enumerate(arrs):
            if not np.isfinite(c).all():
                raise ValueError(f"core {a} contains NaN or Inf")
            c.setflags(write=False)
        self._cores = arrs
        self._d = int(d)
        self._shape = tuple(int(s) for s in shape)
        self._ranks = tuple(int(r) for r in ranks)
        self._impl = _core.Cloud(self._d, list(self._shape), list(self._ranks),
                                 [c.reshape(-1) for c in arrs])

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, d: int, shape: Sequence[int], rank: int | Sequence[int], seed: int = 0,
               scale: float = 1.0) -> "TTPointCloud":
        """Random Gaussian cores, scaled so points have per-coordinate variance about scale^2."""
        d = as_positive_int(d, "d")
        shape = tuple(as_positive_int(s, "shape entry") for s in shape)
        if len(shape) == 0:
            raise ValueError("shape must have at least one mode")
        ranks = _expand_ranks(rank, len(shape))
        rng = np.random.default_rng(seed)
        full = (d,) + ranks + (1,)
        cores = []
        for a, n in enumerate(shape):
            # unit-variance factor per core keeps the product's variance at scale^2
            std = (1.0 / math.sqrt(full[a + 1])) if a + 1 < len(shape) else 1.0
            g = rng.standard_normal((full[a], n, full[a + 1])).astype(np.float32) * np.float32(std)
            cores.append(g)
        cores[0] *= np.float32(scale)
        cores[-1] = cores[-1][:, :, 0]  # the last core is (r, Nk)
        return cls(cores)

    @classmethod
    def random_hierarchical(cls, d: int, shape: Sequence[int], rank: int, seed: int = 0,
                            decay: float = 0.5) -> "TTPointCloud":
        """Random cloud whose level centroids form a clean hierarchical clustering.

        A residual-VQ written as an exact rank-`rank` TT: the TT state carries a position
        (first rank slot) and a local (rank-1)-dimensional basis; each level adds a zero-mean
        offset in that basis and rotates/shrinks the basis by `decay`. Level-a centroids are
        the prefix positions, so it imitates a trained cloud (gaussian random cores do not
        cluster hierarchically). For benchmarks and tests; needs rank >= 2 when k >= 2.
        """
        d = as_positive_int(d, "d")
        shape = tuple(as_positive_int(s, "shape entry") for s in shape)
        rank = as_positive_int(rank, "rank")
        k = len(shape)
        rng = np.random.default_rng(seed)
        if k == 1:
            return cls([rng.standard_normal((d, shape[0])).astype(np.float32)])
        if rank < 2:
            raise ValueError(f"random_hierarchical needs rank >= 2, got {rank}")
        m = rank - 1

        def offsets(n):
            u = rng.standard_normal((n, m))
            return u - u.mean(axis=0)  # zero mean over children: centroids = positions

        g1 = np.zeros((d, shape[0], rank))
        g1[:, :, 0] = rng.standard_normal((d, shape[0]))
        g1[:, :, 1:] = rng.standard_normal((d, shape[0], m)) * (decay / math.sqrt(m))
        cores = [g1]
        for n in shape[1:-1]:
            g = np.zeros((rank, n, rank))
            g[0, :, 0] = 1.0
            g[1:, :, 0] = offsets(n).T
            g[1:, :, 1:] = np.transpose(rng.standard_normal((n, m, m)), (1, 0, 2)) * (decay / math.sqrt(m))
            cores.append(g)
        last = np.zeros((rank, shape[-1]))
        last[0] = 1.0
        last[1:] = offsets(shape[-1]).T
        cores.append(last)
        return cls([c.astype(np.float32) for c in cores])

    # ------------------------------------------------------------------ properties
    @property
    def d(self) -> int:
        """Dimension of the points."""
        return self._d

    @property
    def shape(self) -> tuple:
        """(N1, ..., Nk): the number of children per level."""
        return self._shape

    @property
    def ranks(self) -> tuple:
        """(r1, ..., r(k-1)); empty for a single core."""
        return self._ranks

    @property
    def rank(self) -> int:
        """The largest TT rank (1 for a single core)."""
        return max(self._ranks) if self._ranks else 1

    @property
    def ncores(self) -> int:
        return len(self._shape)

    @property
    def npoints(self) -> int:
        """N1 * ... * Nk."""
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def nparams(self) -> int:
        """Number of floats in the cores: d*N1*r1 + sum r(i-1)*Ni*ri."""
        return int(sum(c.size for c in self._cores))

    @property
    def cores(self) -> list:
        """The cores as read-only float32 arrays (see the class docstring for shapes)."""
        return list(self._cores)

    @property
    def table_bytes(self) -> int:
        """Bytes of the query-independent search tables (centroid norms of every level)."""
        return int(self._impl.table_bytes)

    def __repr__(self) -> str:
        return (f"TTPointCloud(d={self.d}, shape={self.shape}, ranks={self.ranks}, "
                f"npoints={self.npoints}, nparams={self.nparams})")

    # ------------------------------------------------------------------ numerics
    def reconstruct(self, ids) -> np.ndarray:
        """Points for flat ids: ids (n,) int -> (n, d) float32."""
        ids = as_ids(ids, self.npoints, "ids")
        _sync_threads()
        return self._impl.centroids(self.ncores, ids)

    def centroids(self, level: int, ids=None) -> np.ndarray:
        """Level centroids (suffix means, eq. 13): (N1*...*N_level, d), or only those of `ids`.

        level 1..k; level k gives the points themselves.
        """
        level = as_positive_int(level, "level", self.ncores)
        count = int(np.prod(self._shape[:level], dtype=np.int64))
        ids = np.arange(count, dtype=np.int64) if ids is None else as_ids(ids, count, "ids")
        _sync_threads()
        return self._impl.centroids(level, ids)

    def centroid_norms(self, level: int) -> np.ndarray:
        """Squared norms of all level centroids, (N1*...*N_level,) float32 (a search table)."""
        level = as_positive_int(level, "level", self.ncores)
        return self._impl.centroid_norms(level)

    def search(self, x, k: int, beam: int | None = None, exact: bool = True):
        """k nearest TT points of each row of x by beam search.

        x (n, d) float32 -> D (n, k) float32 exact squared L2 distances ascending,
        I (n, k) int64 flat point ids. beam (default max(k, DEFAULT_BEAM)) must be >= k;
        a beam >= the number of centroids of every level gives the exact answer.
        exact=False skips reconstructing the final candidates (cheaper for long probe lists):
        the order is then by the expanded form ||q||^2 - 2 q.c + ||c||^2 in float32 and D holds
        those values (equal to the true distances up to float32 cancellation).
        """
        k = as_positive_int(k, "k", self.npoints)
        beam = max(k, DEFAULT_BEAM) if beam is None else as_positive_int(beam, "beam")
        if beam < k:
            raise ValueError(f"beam must be >= k={k}, got {beam}")
        return self._search(x, k, beam, exact)  # validates x once

    def _search(self, x, k: int, beam: int, exact: bool = True):
        # beam < k allowed: upper levels keep `beam` (TTQuantizer's probe lists)
        x = as_float_matrix(x, self.d, "x")
        k = as_positive_int(k, "k", self.npoints)
        _sync_threads()
        return self._impl.search(x, k, as_positive_int(beam, "beam"), bool(exact))

    def assign(self, x, beam: int | None = None) -> np.ndarray:
        """Nearest TT point (flat id) of each row: x (n, d) -> (n,) int64."""
        return self.search(x, 1, beam)[1][:, 0]

    def compute_residuals(self, x, ids) -> np.ndarray:
        """x (n, d) - reconstruct(ids (n,)) -> (n, d) float32."""
        x = as_float_matrix(x, self.d, "x")
        ids = as_ids(ids, self.npoints, "ids")
        if ids.shape[0] != x.shape[0]:
            raise ValueError(f"ids must have one entry per row of x: {x.shape[0]} rows, {ids.shape[0]} ids")
        _sync_threads()
        return self._impl.residuals(x, ids)

    def multi_index(self, ids) -> np.ndarray:
        """Flat ids (n,) -> multi-indices (n, k) int64."""
        ids = as_ids(ids, self.npoints, "ids")
        return np.stack(np.unravel_index(ids, self._shape), axis=1).astype(np.int64)

    def flat_index(self, multi) -> np.ndarray:
        """Multi-indices (n, k) -> flat ids (n,) int64."""
        multi = np.asarray(multi, dtype=np.int64)
        if multi.ndim != 2 or multi.shape[1] != self.ncores:
            raise ValueError(f"multi must have shape (n, {self.ncores}), got {multi.shape}")
        return np.ravel_multi_index(tuple(multi.T), self._shape).astype(np.int64)

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Versioned binary form: magic, version, JSON header, float32 cores, CRC32."""
        header = json.dumps({"d": self.d, "shape": list(self.shape), "ranks": list(self.ranks),
                             "dtype": "float32", "byteorder": "little"}).encode()
        body = b"".join(np.ascontiguousarray(c, dtype="<f4").tobytes() for c in self._cores)
        payload = _MAGIC + struct.pack("<IQ", _VERSION, len(header)) + header + body
        return payload + struct.pack("<I", zlib.crc32(payload) & 0xFFFFFFFF)

    @classmethod
    def from_bytes(cls, buf) -> "TTPointCloud":
        """Inverse of to_bytes; raises ValueError on a corrupt, truncated or unknown-version buffer."""
        buf = bytes(buf)
        fixed = len(_MAGIC) + 12
        if len(buf) < fixed + 4:
            raise ValueError(f"not a TT point cloud: {len(buf)} bytes is too short (truncated?)")
        if buf[:len(_MAGIC)] != _MAGIC:
            raise ValueError("not a TT point cloud: bad magic bytes")
        version, hlen = struct.unpack("<IQ", buf[len(_MAGIC):fixed])
        if version != _VERSION:
            raise ValueError(f"unsupported TT point cloud format version {version} "
                             f"(this tt_faiss reads version {_VERSION})")
        (crc,) = struct.unpack("<I", buf[-4:])
        if zlib.crc32(buf[:-4]) & 0xFFFFFFFF != crc:
            raise ValueError("corrupt TT point cloud: checksum mismatch (truncated or modified file)")
        try:
            header = json.loads(buf[fixed:fixed + hlen].decode())
            d, shape, ranks = int(header["d"]), [int(s) for s in header["shape"]], [int(r) for r in header["ranks"]]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(f"corrupt TT point cloud header: {e}") from None
        full = [d] + ranks + [1]
        shapes = [(full[a], n, full[a + 1]) for a, n in enumerate(shape)]
        shapes[-1] = shapes[-1][:2]
        pos = fixed + hlen
        cores = []
        for s in shapes:
            nbytes = 4 * int(np.prod(s))
            if pos + nbytes > len(buf) - 4:
                raise ValueError("corrupt TT point cloud: core data truncated")
            cores.append(np.frombuffer(buf, dtype="<f4", count=nbytes // 4, offset=pos).reshape(s))
            pos += nbytes
        if pos != len(buf) - 4:
            raise ValueError("corrupt TT point cloud: trailing bytes after the cores")
        return cls(cores)

    def save(self, path) -> None:
        """Write the cloud to `path` atomically (temp file + rename)."""
        data = self.to_bytes()
        atomic_write(path, lambda f: f.write(data))

    @classmethod
    def load(cls, path) -> "TTPointCloud":
        """Read a cloud written by save(); raises ValueError on a corrupt file."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __reduce__(self):
        return (TTPointCloud.from_bytes, (self.to_bytes(),))

    def __eq__(self, other) -> bool:
        return (isinstance(other, TTPointCloud) and self.shape == other.shape
                and self.ranks == other.ranks and self.d == other.d
                and all(np.array_equal(a, b) for a, b in zip(self._cores, other._cores)))

    __hash__ = None


def _expand_ranks(rank, k: int) -> tuple:
    if isinstance(rank, (list, tuple)):
        ranks = tuple(as_positive_int(r, "rank") for r in rank)
        if len(ranks) != k - 1:
            raise ValueError(f"need {k - 1} ranks for {k} cores, got {len(ranks)}")
        return ranks
    return (as_positive_int(rank, "rank"),) * (k - 1)
