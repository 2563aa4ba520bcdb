"""Compressed memory banks for nearest-neighbour-distance anomaly scoring.

PatchCore (Roth et al. 2022) keeps a *memory bank* of features extracted from normal
(anomaly-free) data and scores a test feature by its distance to the nearest bank feature.
The bank is shrunk by greedy k-center ("coreset") subsampling. The TT point-cloud paper
(section 2, "OOD detection", and section 3.2) replaces the subsample by a TT point cloud
with the same number of parameters: its points are not copies of training features, but
for distance-to-normal scoring they only need to cover the normal distribution.

Banks (same interface, same memory for a given ``compression``)::

    bank = TTMemoryBank().fit(features, compression=100)        # needs tt_faiss.fit (torch)
    bank = CoresetMemoryBank().fit(features, compression=100)   # PatchCore greedy coreset
    bank = RandomMemoryBank().fit(features, compression=100)
    bank = FullMemoryBank().fit(features)                       # exact, faiss IndexFlatL2
    s = bank.score(x, k=1)        # (n,) float32 L2 distance (k>1: mean of the k nearest)
    bank.nparams, bank.nbytes, bank.compression_ratio
    bank.save(path); bank = load_memory_bank(path)  # or TTMemoryBank.load(path), ...

Budget rule: a compression ``c`` on ``N`` features of dimension ``d`` allows
``floor(N * d / c)`` float32 parameters (``nparams=`` sets it directly). Subsampling banks
keep ``floor(budget / d)`` features; the TT bank picks a shape and rank with at most that
many parameters (see :func:`tt_shape_for_budget`).

PatchCore drop-in (its samplers have ``run(features) -> features``)::

    from tt_faiss.anomaly import TTSampler
    sampler = TTSampler(percentage=0.01)                 # 100x compression
    patchcore = patchcore.patchcore.PatchCore(device)
    patchcore.load(..., featuresampler=sampler, ...)     # instead of ApproximateGreedyCoresetSampler
    # sampler.run(features) fits a TT bank and returns its materialised points
    # (N1*N2 rows), which PatchCore then indexes with faiss as usual.

Metrics (no extra dependency): :func:`roc_auc`, :func:`average_precision` (AUPRC),
:func:`precision_at_recall` (P@R90 with ``recall=0.9``), :func:`anomaly_metrics`.
Labels are 1 (or True) for anomalous, scores are higher for more anomalous.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._atomic import atomic_write

__all__ = [
    "MemoryBank", "TTMemoryBank", "CoresetMemoryBank", "RandomMemoryBank", "FullMemoryBank",
    "TTSampler", "load_memory_bank", "budget_nparams", "tt_nparams", "tt_shape_for_budget",
    "greedy_coreset_indices", "sparse_random_projection", "coverage_resample",
    "roc_auc", "average_precision", "precision_at_recall", "anomaly_metrics",
]


# ----------------------------------------------------------------------------- validation

def _as_features(x, name, d=None, allow_empty=False):
    """Return ``x`` as a C-contiguous float32 (n, d) array or raise naming ``name``."""
    if type(x).__module__.split(".")[0] == "torch":  # accept torch tensors without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{name} must be a 2-D float array, got {type(x).__name__}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a 2-D float array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (0 rows)")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected d={d}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _positive_int(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)


def _atomic_savez(path, **arrays):
    atomic_write(path, lambda f: np.savez(f, **arrays))


# ----------------------------------------------------------------------------- metrics

def _binary_inputs(labels, scores):
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    y = y.astype(np.int64)
    npos = int(y.sum())
    if npos == 0 or npos == y.size:
        raise ValueError("labels must contain both normal (0) and anomalous (1) samples")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or Inf")
    return y, s


def _pr_points(labels, scores):
    """True/false positive counts at each distinct threshold, highest score first."""
    y, s = _binary_inputs(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each tie group
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    return tps, fps, tps[-1], fps[-1]


def roc_auc(labels, scores):
    """Area under the ROC curve (ties count one half), as sklearn's ``roc_auc_score``."""
    tps, fps, p, n = _pr_points(labels, scores)
    tpr = np.r_[0.0, tps / p]
    fpr = np.r_[0.0, fps / n]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def average_precision(labels, scores):
    """AUPRC as step-wise average precision ``sum_i (R_i - R_{i-1}) P_i`` (sklearn's definition)."""
    tps, fps, p, _ = _pr_points(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / p
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_recall(labels, scores, recall=0.9):
    """Precision at the highest threshold whose recall reaches ``recall`` (P@R90 for 0.9)."""
    if not 0 < recall <= 1:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    tps, fps, p, _ = _pr_points(labels, scores)
    i = int(np.argmax(tps / p >= recall - 1e-12))  # recall is non-decreasing; the last point is 1
    return float(tps[i] / (tps[i] + fps[i]))


def anomaly_metrics(labels, scores):
    """``{"auroc", "auprc", "p_at_r90"}`` for binary ``labels`` (1 = anomalous) and ``scores``."""
    return {"auroc": roc_auc(labels, scores),
            "auprc": average_precision(labels, scores),
            "p_at_r90": precision_at_recall(labels, scores, 0.9)}


# ----------------------------------------------------------------------------- budget rule

def budget_nparams(n, d, compression=None, nparams=None):
    """Parameter budget ``floor(n * d / compression)``, or ``nparams`` when given."""
    if nparams is not None:
        if compression is not None:
            raise ValueError("give either compression or nparams, not both")
        return _positive_int(nparams, "nparams")
    if compression is None:
        raise ValueError("give compression (e.g. 100) or nparams")
    if isinstance(compression, bool) or not isinstance(compression, (int, float, np.integer, np.floating)):
        raise TypeError(f"compression must be a number, got {type(compression).__name__}")
    if not (compression >= 1 and math.isfinite(compression)):
        raise ValueError(f"compression must be a finite number >= 1, got {compression}")
    budget = int(math.floor(n * d / float(compression) + 1e-9))
    if budget < 1:
        raise ValueError(f"compression {compression} leaves no parameters for {n} x {d} features")
    return budget


def tt_nparams(d, shape, rank):
    """Parameters of a TT cloud: ``d*N1*r1 + sum_i r_{i-1}*N_i*r_i + r_{k-1}*N_k``."""
    shape = [int(s) for s in shape]
    if len(shape) == 1:
        return d * shape[0]
    ranks = [rank] * (len(shape) - 1) if np.isscalar(rank) else [int(r) for r in rank]
    if len(ranks) != len(shape) - 1:
        raise ValueError(f"rank must be an int or {len(shape) - 1} ints, got {rank}")
    total = d * shape[0] * ranks[0] + ranks[-1] * shape[-1]
    for i in range(1, len(shape) - 1):
        total += ranks[i - 1] * shape[i] * ranks[i]
    return int(total)


def tt_shape_for_budget(nparams, d, rank=None, shape=None, n2=256, min_n1=2, max_points=None):
    """Choose a 2-core TT ``(shape, rank)`` with at most ``nparams`` parameters.

    The paper (section 3.2) uses two cores, ``G1: d x N1 x r`` and ``G2: r x N2``, costing
    ``N1*d*r + r*N2``. Every first index ``i1`` gives an r-dimensional linear patch
    ``G1[:, i1, :] @ G2[:, i2]`` holding ``N2`` points, so a cluster costs about ``r``
    coreset features. Rule (each part overridable):

    * ``rank`` r: given, else 4 -- lowered (4, 2, 1) until at least ``min_n1`` clusters fit.
      On the synthetic benchmark (1e5 x 256, 100x) r=4 beat r=2, 8 and 16: more, lower-rank
      clusters cover a union of manifolds better than fewer, richer ones;
    * ``N2``: ``n2`` (256) points per cluster, but at most 1/8 of the budget
      (``r*N2 <= nparams/8``, rounded down to a power of two, at least 1);
    * ``N1 = floor((nparams - r*N2) / (d*r))``: the rest of the budget;
    * with ``max_points`` (the trainer wants at least one training feature per TT point),
      ``N2`` is halved until ``N1*N2 <= max_points``.

    With ``shape`` given (any number of cores) and no ``rank``, the largest rank that fits
    is used. Returns ``(shape_tuple, rank)``; raises ValueError when nothing fits.
    """
    nparams = _positive_int(nparams, "nparams")
    d = _positive_int(d, "d")
    if shape is not None:
        shape = tuple(_positive_int(s, "shape entry") for s in shape)
        if not shape:
            raise ValueError("shape must have at least one entry")
        if rank is not None:
            return shape, _positive_int(rank, "rank")
        if len(shape) == 1:
            if d * shape[0] > nparams:
                raise ValueError(f"shape {shape} needs {d * shape[0]} parameters > budget {nparams}")
            return shape, 1
        r = 0
        while tt_nparams(d, shape, r + 1) <= nparams:
            r += 1
        if r == 0:
            raise ValueError(f"shape {shape} does not fit {nparams} parameters even at rank 1")
        return shape, r
    ranks = [_positive_int(rank, "rank")] if rank is not None else [4, 2, 1]
    for r in ranks:
        cap = max(1, nparams // (8 * r))
        n2_r = max(1, min(int(n2), 1 << (cap.bit_length() - 1)))
        n1 = (nparams - r * n2_r) // (d * r)
        while max_points is not None and n2_r > 1 and n1 * n2_r > max_points:
            n2_r //= 2
            n1 = (nparams - r * n2_r) // (d * r)
        if max_points is not None and n1 * n2_r > max_points:
            continue
        if n1 >= min_n1 or (r == ranks[-1] and n1 >= 1):
            return (int(n1), int(n2_r)), int(r)
    raise ValueError(f"a budget of {nparams} parameters is too small for a TT cloud in d={d} "
                     f"(needs at least d*r + r = {d * ranks[-1] + ranks[-1]})")


# ----------------------------------------------------------------------------- coreset

def sparse_random_projection(d, k, seed=0):
    """(d, k) float32 sparse random projection (Li et al. 2006, density 1/sqrt(d)).

    Entries are 0 or ``+-sqrt(1/(density*k))``, so squared distances are preserved in
    expectation (Johnson-Lindenstrauss). PatchCore projects to 128 dims before its greedy
    search for speed (with a dense random ``torch.nn.Linear``; a sparse map is the cheaper JL
    equivalent). Kept dense in memory: numpy BLAS on a dense (d, k) matrix is faster than a
    sparse product at these sizes.
    """
    d = _positive_int(d, "d")
    k = _positive_int(k, "k")
    rng = np.random.default_rng(seed)
    density = 1.0 / math.sqrt(d)
    mask = rng.random((d, k)) < density
    signs = rng.integers(0, 2, size=(d, k)) * 2 - 1
    return (mask * signs * math.sqrt(1.0 / (density * k))).astype(np.float32)


def _project(x, proj, chunk=1 << 16):
    out = np.empty((x.shape[0], proj.shape[1]), dtype=np.float32)
    for i in range(0, x.shape[0], chunk):
        np.matmul(x[i:i + chunk], proj, out=out[i:i + chunk])
    return out


def greedy_coreset_indices(features, n, *, projection_dim=128, approximate=True,
                           num_starting_points=10, seed=0, verbose=False):
    """Indices of a greedy k-center coreset of ``features`` (PatchCore's sampler), shape (n,).

    Each step adds the feature farthest (L2) from everything chosen so far. As in PatchCore:

    * features with ``d > projection_dim`` are first mapped by a fixed sparse random
      projection to ``projection_dim`` dims (``None`` or 0 disables it);
    * ``approximate=True`` (ApproximateGreedyCoresetSampler) starts every feature's distance
      at its mean L2 distance to ``num_starting_points`` random features
      (``np.random.default_rng(seed).choice(N, s, replace=False)``; they are not selected
      themselves); ``approximate=False`` (GreedyCoresetSampler) starts from the
      feature maximising the root-sum-square distance to all others, computed in closed form
      (``sum_j |x_i - x_j|^2 = N |x_i - mean|^2 + const``) instead of an N x N matrix.

    Neither variant materialises N x N distances; a step costs O(N * projection_dim) and the
    rest is exact pruning: the projected features are rotated onto their principal axes
    (an orthogonal map, so distances are unchanged) and the distance over the leading axes
    is a lower bound; only features whose bound is below their current distance get the
    full distance computed.
    """
    x = _as_features(features, "features")
    N, d = x.shape
    n = _positive_int(n, "n")
    if n > N:
        raise ValueError(f"cannot select {n} coreset features out of {N}")
    rng = np.random.default_rng([seed, 1])  # SVD sample; the starting points use seed alone
    if projection_dim and d > projection_dim:
        z = _project(x, sparse_random_projection(d, projection_dim, seed=seed))
    else:
        z = x
    z = z - z.mean(axis=0, dtype=np.float64).astype(np.float32)  # distances are shift invariant

    # Rotate onto principal axes (orthogonal) so a prefix of coordinates carries most energy.
    p = z.shape[1]
    sample = z[rng.choice(N, size=min(N, 20000), replace=False)].astype(np.float64)
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    basis = np.zeros((p, p))
    basis[:vt.shape[0]] = vt
    if vt.shape[0] < p:  # complete to an orthonormal basis when the sample is rank deficient
        q, _ = np.linalg.qr(np.c_[vt.T, rng.standard_normal((p, p - vt.shape[0]))])
        basis = q.T
    z = _project(z, np.ascontiguousarray(basis.T, dtype=np.float32))
    lead = min(p, 16)
    z1 = np.ascontiguousarray(z[:, :lead])
    z2 = np.ascontiguousarray(z[:, lead:])
    del z
    n1sq = np.einsum("ij,ij->i", z1, z1)
    n2sq = np.einsum("ij,ij->i", z2, z2) if z2.shape[1] else np.zeros(N, np.float32)

    def sqdist(i, rows=None):
        """Squared distances from feature i to all features (or ``rows``): (lead, rest) parts."""
        if rows is None:
            a = n1sq + n1sq[i] - 2 * (z1 @ z1[i])
            return np.maximum(a, 0, out=a)
        b = n2sq[rows] + n2sq[i] - 2 * (z2[rows] @ z2[i])
        return np.maximum(b, 0, out=b)

    if approximate:
        starts = np.random.default_rng(seed).choice(
            N, size=min(int(num_starting_points), N), replace=False)
        acc = np.zeros(N, np.float64)
        for s in starts:
            acc += np.sqrt(sqdist(s) + sqdist(s, slice(None)))
        mind = (acc / len(starts)) ** 2
        mind = mind.astype(np.float32)
    else:
        mind = np.full(N, np.inf, np.float32)
        first = int(np.argmax(n1sq + n2sq))  # z is centred: |z_i|^2 ranks sum_j |z_i - z_j|^2
    selected = np.empty(n, np.int64)
    it = range(n)
    if verbose:
        from tqdm import tqdm
        it = tqdm(it, desc="coreset", unit="pt", mininterval=1.0)
    for t in it:
        i = first if (t == 0 and not approximate) else int(np.argmax(mind))
        selected[t] = i
        lb = sqdist(i)
        cand = np.flatnonzero(lb < mind)
        if cand.size:
            full = lb[cand] + sqdist(i, cand) if z2.shape[1] else lb[cand]
            mind[cand] = np.minimum(mind[cand], full)
        mind[i] = 0.0  # rounding must never let a chosen feature be picked again
    return selected


def coverage_resample(features, cells=1024, power=0.5, size=None, seed=0):
    """Rows of ``features`` resampled so rare regions weigh more: (size, d) float32.

    A density-fitting trainer (k-means init, NN loss) spends its clusters where the data is
    dense and can leave a rare mode uncovered; its normal features then score like anomalies.
    Here the features are split into ``cells`` greedy k-center cells (which cover rare modes;
    at most N/8 cells)
    and each feature is drawn with probability ``count(cell) ** -power``, so a cell's mass goes
    from ``count`` to ``count ** (1 - power)`` (``power=0``: plain sampling, 1: equal cells).
    ``size`` (default ``min(N, 200_000)``) rows are drawn with replacement, reproducibly.
    """
    x = _as_features(features, "features")
    N = x.shape[0]
    size = min(N, 200_000) if size is None else _positive_int(size, "size")
    if not 0 <= power <= 1:
        raise ValueError(f"power must lie in [0, 1], got {power}")
    rng = np.random.default_rng([seed, 2])
    pool = x if N <= 4 * size else x[np.sort(rng.choice(N, size=4 * size, replace=False))]
    cells = min(_positive_int(cells, "cells"), max(1, pool.shape[0] // 8))  # >= 8 rows per cell
    import faiss
    centers = pool[greedy_coreset_indices(pool, cells, seed=seed)]
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(centers)
    _, a = index.search(pool, 1)
    a = a[:, 0]
    w = np.bincount(a, minlength=cells).astype(np.float64)[a] ** -power
    pick = rng.choice(pool.shape[0], size=size, replace=True, p=w / w.sum())
    return pool[np.sort(pick)]


# ----------------------------------------------------------------------------- banks

class MemoryBank:
    """Base class: a compressed set of normal features scored by nearest-neighbour distance."""

    kind = "base"

    def __init__(self):
        self.d = None
        self.n_train = None

    # subclasses implement _fit(x, budget) and _search(x, k) -> squared distances (n, k)
    def fit(self, features, compression=None, nparams=None):
        """Build the bank from normal ``features`` (N, d) under ``compression`` or ``nparams``."""
        x = _as_features(features, "features")
        budget = budget_nparams(x.shape[0], x.shape[1], compression, nparams)
        self.d = x.shape[1]
        self.n_train = x.shape[0]
        self._fit(x, budget)
        return self

    @property
    def is_trained(self):
        return self.d is not None

    def _check_trained(self):
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(features, ...) first")

    def score(self, x, k=1, squared=False):
        """Anomaly scores (n,) float32: L2 distance to the nearest bank point (k>1: mean of k).

        ``squared=True`` averages squared distances instead (PatchCore's faiss scores).
        """
        self._check_trained()
        x = _as_features(x, "x", d=self.d)
        k = _positive_int(k, "k")
        if k > self.npoints:
            raise ValueError(f"k={k} exceeds the {self.npoints} points in the bank")
        D = np.maximum(self._search(x, k), 0)
        if not squared:
            D = np.sqrt(D)
        return D.mean(axis=1).astype(np.float32)

    @property
    def nbytes(self):
        """Bytes of the stored model (float32 parameters)."""
        return 4 * self.nparams

    @property
    def compression_ratio(self):
        """``n_train * d / nparams`` (>= the requested compression)."""
        self._check_trained()
        return self.n_train * self.d / self.nparams

    def _meta(self):
        return {"kind": self.kind, "d": self.d, "n_train": self.n_train}

    @classmethod
    def load(cls, path):
        bank = load_memory_bank(path)
        if not isinstance(bank, cls):
            raise ValueError(f"{path} holds a {type(bank).__name__}, not a {cls.__name__}")
        return bank


class _FlatBank(MemoryBank):
    """A bank that stores raw features and searches them exactly with faiss IndexFlatL2."""

    def __init__(self):
        super().__init__()
        self.points = None
        self._index = None

    def _set_points(self, points):
        import faiss
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self._index = faiss.IndexFlatL2(self.points.shape[1])
        self._index.add(self.points)

    @property
    def npoints(self):
        self._check_trained()
        return self.points.shape[0]

    @property
    def nparams(self):
        self._check_trained()
        return int(self.points.size)

    def _search(self, x, k):
        # faiss's BLAS path computes |x|^2 + |y|^2 - 2xy, which leaves rounding noise
        # (bank members would not score exactly 0); recompute the k found distances directly.
        _, I = self._index.search(x, k)
        diff = self.points[I] - x[:, None, :]
        D = np.einsum("nkd,nkd->nk", diff, diff)
        return np.sort(D, axis=1)

    def save(self, path):
        """Write the bank to one ``.npz`` file (atomic)."""
        self._check_trained()
        _atomic_savez(path, meta=np.array(json.dumps(self._meta())), points=self.points)

    @classmethod
    def _from_npz(cls, meta, z):
        bank = cls.__new__(cls)
        _FlatBank.__init__(bank)
        bank._restore_options(meta)
        bank.d, bank.n_train = meta["d"], meta["n_train"]
        bank._set_points(z["points"])
        return bank

    def _restore_options(self, meta):
        pass


class FullMemoryBank(_FlatBank):
    """The uncompressed bank: every training feature, exact search (faiss IndexFlatL2)."""

    kind = "full"

    def fit(self, features, compression=1, nparams=None):
        """Keep all ``features``; only ``compression=1`` is meaningful here."""
        if nparams is not None or compression != 1:
            raise ValueError("FullMemoryBank keeps every feature; use compression=1")
        return super().fit(features, compression=1)

    def _fit(self, x, budget):
        self._set_points(x)


class RandomMemoryBank(_FlatBank):
    """Uniform random subsample of ``floor(budget / d)`` training features."""

    kind = "random"

    def __init__(self, seed=0):
        super().__init__()
        self.seed = seed

    def _fit(self, x, budget):
        n = budget // x.shape[1]
        if n < 1:
            raise ValueError(f"budget {budget} is smaller than one feature (d={x.shape[1]})")
        idx = np.random.default_rng(self.seed).choice(x.shape[0], size=n, replace=False)
        self.indices = np.sort(idx)
        self._set_points(x[self.indices])

    def _meta(self):
        return {**super()._meta(), "seed": self.seed}

    def _restore_options(self, meta):
        self.seed = meta.get("seed", 0)


class CoresetMemoryBank(_FlatBank):
    """PatchCore's greedy k-center coreset of ``floor(budget / d)`` features.

    ``projection_dim``, ``approximate``, ``num_starting_points`` are as in
    :func:`greedy_coreset_indices` (defaults = PatchCore's ApproximateGreedyCoresetSampler).
    """

    kind = "coreset"

    def __init__(self, projection_dim=128, approximate=True, num_starting_points=10, seed=0,
                 verbose=False):
        super().__init__()
        self.projection_dim = projection_dim
        self.approximate = approximate
        self.num_starting_points = num_starting_points
        self.seed = seed
        self.verbose = verbose

    def _fit(self, x, budget):
        n = budget // x.shape[1]
        if n < 1:
            raise ValueError(f"budget {budget} is smaller than one feature (d={x.shape[1]})")
        self.indices = greedy_coreset_indices(
            x, n, projection_dim=self.projection_dim, approximate=self.approximate,
            num_starting_points=self.num_starting_points, seed=self.seed, verbose=self.verbose)
        self._set_points(x[self.indices])

    def _meta(self):
        return {**super()._meta(), "projection_dim": self.projection_dim,
                "approximate": self.approximate, "num_starting_points": self.num_starting_points,
                "seed": self.seed}

    def _restore_options(self, meta):
        self.projection_dim = meta.get("projection_dim", 128)
        self.approximate = meta.get("approximate", True)
        self.num_starting_points = meta.get("num_starting_points", 10)
        self.seed = meta.get("seed", 0)
        self.verbose = False


class TTMemoryBank(MemoryBank):
    """A TT point cloud fitted to the normal features; scored by beam search (never materialised).

    ``beam``: beam width of :meth:`TTPointCloud.search` (None -> the cloud's default).
    ``balance``: with at least 10,000 features the trainer sees :func:`coverage_resample`
    ``(features, power=balance)`` instead of the raw features (0 disables it); on the
    synthetic benchmark it raised AUPRC at 100x and 1000x (bench/results/anomaly.md).
    ``fit_kwargs`` go to :func:`tt_faiss.fit` (the torch trainer).
    """

    kind = "tt"

    def __init__(self, beam=32, seed=0, verbose=False, balance=0.5, **fit_kwargs):
        super().__init__()
        self.balance = balance
        self.beam = beam
        self.seed = seed
        self.verbose = verbose
        self.fit_kwargs = fit_kwargs
        self.cloud = None

    @classmethod
    def from_cloud(cls, cloud, n_train=None, beam=32):
        """Wrap an existing TTPointCloud (``n_train`` only feeds ``compression_ratio``)."""
        bank = cls(beam=beam)
        bank.cloud = cloud
        bank.d = int(cloud.d)
        bank.n_train = n_train
        return bank

    def fit(self, features, compression=None, nparams=None, shape=None, rank=None, **fit_kwargs):
        """Fit a TT cloud to ``features`` (N, d) with at most ``N*d/compression`` parameters.

        ``shape``/``rank`` override :func:`tt_shape_for_budget`; with both given the budget
        is not consulted (``compression``/``nparams`` may then be omitted).
        """
        x = _as_features(features, "features")
        N, d = x.shape
        # Below 10k rows the trainer sees every row anyway and resampling with replacement
        # would only drop a third of them.
        use = self.balance and N >= 10_000
        xfit = coverage_resample(x, power=self.balance, seed=self.seed) if use else x
        if shape is not None and rank is not None and compression is None and nparams is None:
            budget = None
            shape, rank = tt_shape_for_budget(1, d, rank=rank, shape=shape)
        else:
            if compression is None and nparams is None:
                compression = 100
            budget = budget_nparams(N, d, compression, nparams)
            shape, rank = tt_shape_for_budget(budget, d, rank=rank, shape=shape,
                                              max_points=len(xfit))
        from . import fit as tt_fit  # lazy: the trainer imports torch
        kwargs = {**self.fit_kwargs, **fit_kwargs}
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("verbose", self.verbose)
        self.cloud = tt_fit(xfit, shape, rank, **kwargs)
        self.d, self.n_train = d, N
        self.budget = budget
        return self

    @property
    def is_trained(self):
        return self.cloud is not None

    @property
    def npoints(self):
        self._check_trained()
        return int(self.cloud.npoints)

    @property
    def nparams(self):
        self._check_trained()
        return int(self.cloud.nparams)

    @property
    def compression_ratio(self):
        self._check_trained()
        if self.n_train is None:
            raise ValueError("compression_ratio needs n_train (pass it to from_cloud)")
        return self.n_train * self.d / self.nparams

    def _search(self, x, k):
        beam = None if self.beam is None else max(int(self.beam), k)
        D, _ = self.cloud.search(x, k, beam=beam)
        return np.asarray(D, dtype=np.float32)

    def points(self):
        """Materialise all N1*...*Nk TT points, (npoints, d) float32 (memory: npoints*d*4 bytes)."""
        self._check_trained()
        return self.cloud.reconstruct(np.arange(self.npoints, dtype=np.int64))

    def save(self, path):
        """Write cores and metadata to one ``.npz`` file (atomic)."""
        self._check_trained()
        meta = {**self._meta(), "beam": self.beam, "seed": self.seed,
                "ncores": len(self.cloud.cores)}
        cores = {f"core{i}": np.asarray(c) for i, c in enumerate(self.cloud.cores)}
        _atomic_savez(path, meta=np.array(json.dumps(meta)), **cores)

    @classmethod
    def _from_npz(cls, meta, z):
        from .cloud import TTPointCloud
        cores = [z[f"core{i}"] for i in range(meta["ncores"])]
        bank = cls.from_cloud(TTPointCloud(cores), n_train=meta["n_train"], beam=meta["beam"])
        bank.seed = meta.get("seed", 0)
        return bank


_KINDS = {"full": FullMemoryBank, "random": RandomMemoryBank, "coreset": CoresetMemoryBank,
          "tt": TTMemoryBank}


def load_memory_bank(path):
    """Load any bank written by ``save``; the class is read from the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        kind = meta["kind"]
    except Exception as e:  # not an npz, no metadata, pickled content, ...
        raise ValueError(f"{path} is not a memory bank file ({type(e).__name__}: {e})") from e
    with z:
        if kind not in _KINDS:
            raise ValueError(f"{path}: unknown memory bank kind {kind!r}")
        try:
            return _KINDS[kind]._from_npz(meta, z)
        except KeyError as e:
            raise ValueError(f"{path} is not a memory bank file (missing {e})") from e


# ----------------------------------------------------------------------------- PatchCore adapter

class TTSampler:
    """PatchCore feature sampler: ``run(features) -> features`` made of materialised TT points.

    ``percentage`` has PatchCore's meaning (0.01 keeps the memory of 1% of the features, i.e.
    100x compression). ``run`` fits a :class:`TTMemoryBank` and returns all its N1*N2 points
    in the input's type (numpy array or torch tensor on the input's device). The fitted bank
    stays in ``self.bank`` (e.g. to score with beam search instead of PatchCore's faiss).
    """

    def __init__(self, percentage, shape=None, rank=None, **bank_kwargs):
        if not 0 < percentage < 1:
            raise ValueError("Percentage value not in (0, 1).")
        self.percentage = percentage
        self.shape = shape
        self.rank = rank
        self.bank_kwargs = bank_kwargs
        self.bank = None

    def run(self, features):
        is_torch = type(features).__module__.split(".")[0] == "torch"
        x = _as_features(features, "features")
        self.bank = TTMemoryBank(**self.bank_kwargs).fit(
            x, compression=1.0 / self.percentage, shape=self.shape, rank=self.rank)
        pts = self.bank.points()
        if is_torch:
            import torch
            return torch.from_numpy(pts).to(features.device)
        return pts
