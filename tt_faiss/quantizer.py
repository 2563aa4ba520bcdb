"""TTQuantizer: a faiss-Index-like coarse quantizer over the N1*...*Nk points of a TT cloud."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._validate import as_float_matrix, as_ids, as_positive_int
from .cloud import DEFAULT_BEAM, TTPointCloud, _expand_ranks


class TTQuantizer:
    """Coarse quantizer whose centroids are the points of a TTPointCloud.

    faiss vocabulary: ``d``, ``ntotal`` (number of centroids once trained, 0 before),
    ``is_trained``, ``search(x, k) -> (D, I)``, ``assign``, ``reconstruct``. ``beam`` is the beam
    width of the upper levels of the search; the last level always keeps max(beam, k), so a
    search for k = nprobe > beam lists does not pay for a beam of nprobe at every level
    (the same role as faiss's ResidualCoarseQuantizer beam_factor).
    """

    def __init__(self, d: int, shape: Sequence[int], rank, beam: int = DEFAULT_BEAM):
        self.d = as_positive_int(d, "d")
        self.shape = tuple(as_positive_int(s, "shape entry") for s in shape)
        if not self.shape:
            raise ValueError("shape must have at least one mode")
        self.ranks = _expand_ranks(rank, len(self.shape))
        self.beam = beam
        self.cloud: TTPointCloud | None = None

    @classmethod
    def from_cloud(cls, cloud: TTPointCloud, beam: int = DEFAULT_BEAM) -> "TTQuantizer":
        """A trained quantizer over an existing cloud."""
        if not isinstance(cloud, TTPointCloud):
            raise TypeError(f"cloud must be a TTPointCloud, got {type(cloud).__name__}")
        q = cls(cloud.d, cloud.shape, list(cloud.ranks), beam=beam)
        q.cloud = cloud
        return q

    # ---------------------------------------------------------------- faiss-like state
    @property
    def beam(self) -> int:
        return self._beam

    @beam.setter
    def beam(self, v) -> None:
        self._beam = as_positive_int(v, "beam")

    @property
    def rank(self) -> int:
        return max(self.ranks) if self.ranks else 1

    @property
    def nlist(self) -> int:
        """Number of TT points (buckets), known before training."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_trained(self) -> bool:
        return self.cloud is not None

    @property
    def ntotal(self) -> int:
        return self.cloud.npoints if self.cloud is not None else 0

    def __repr__(self) -> str:
        return (f"TTQuantizer(d={self.d}, shape={self.shape}, ranks={self.ranks}, "
                f"beam={self.beam}, is_trained={self.is_trained})")

    def _trained(self) -> TTPointCloud:
        if self.cloud is None:
            raise RuntimeError("TTQuantizer is not trained: call train(x) or use TTQuantizer.from_cloud")
        return self.cloud

    # ---------------------------------------------------------------- training
    def train(self, x, **fit_kwargs) -> None:
        """Fit the TT cloud to x (n, d) with tt_faiss.fit (needs torch); fit_kwargs go to fit."""
        from . import fit

        x = as_float_matrix(x, self.d, "x")
        self.cloud = fit(x, self.shape, list(self.ranks) if self.ranks else 1, **fit_kwargs)

    # ---------------------------------------------------------------- search
    def search(self, x, k: int, beam: int | None = None, exact: bool = True):
        """k nearest centroids: x (n, d) -> D (n, k) float32, I (n, k) int64 (ascending).

        exact=False: see TTPointCloud.search (cheaper distances, for probe lists).
        """
        cloud = self._trained()
        k = as_positive_int(k, "k", cloud.npoints)
        beam = self.beam if beam is None else as_positive_int(beam, "beam")
        return cloud._search(x, k, beam, exact)

    def assign(self, x, k: int = 1):
        """Nearest centroid ids: (n,) int64 for k=1, else (n, k)."""
        _, idx = self.search(x, k)
        return idx[:, 0] if k == 1 else idx

    def reconstruct(self, key: int) -> np.ndarray:
        """Centroid `key` as a (d,) float32 vector."""
        return self._trained().reconstruct(as_ids(key, self.ntotal, "key"))[0]

    def reconstruct_batch(self, ids) -> np.ndarray:
        """Centroids for ids (n,) -> (n, d) float32."""
        return self._trained().reconstruct(ids)

    def reconstruct_n(self, i0: int = 0, n: int | None = None) -> np.ndarray:
        """Centroids i0 .. i0+n-1 -> (n, d) float32 (materialises them: mind the memory)."""
        cloud = self._trained()
        n = cloud.npoints - i0 if n is None else n
        if i0 < 0 or n < 0 or i0 + n > cloud.npoints:
            raise ValueError(f"range [{i0}, {i0 + n}) is outside [0, {cloud.npoints})")
        return cloud.reconstruct(np.arange(i0, i0 + n, dtype=np.int64))

    def compute_residuals(self, x, ids) -> np.ndarray:
        """x (n, d) - centroid(ids) -> (n, d) float32."""
        return self._trained().compute_residuals(x, ids)
